"""juggler.executor"""
