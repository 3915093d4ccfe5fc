"""juggler.common"""
