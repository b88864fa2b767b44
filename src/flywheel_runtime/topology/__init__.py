"""flywheel_runtime.topology"""
