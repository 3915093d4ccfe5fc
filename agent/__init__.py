"""juggler.agent"""
