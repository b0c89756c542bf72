"""sandboxctl.gofer"""
