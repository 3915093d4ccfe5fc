"""juggler.cli"""
