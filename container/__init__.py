"""juggler.container"""
