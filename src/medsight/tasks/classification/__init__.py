"""tasks/classification"""
