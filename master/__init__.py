"""juggler.master"""
