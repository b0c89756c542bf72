"""sandboxctl.profiles"""
