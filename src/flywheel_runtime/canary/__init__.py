"""flywheel_runtime.canary"""
