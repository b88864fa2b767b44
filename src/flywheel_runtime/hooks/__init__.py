"""flywheel_runtime.hooks"""
