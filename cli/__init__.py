"""sandboxctl.cli"""
