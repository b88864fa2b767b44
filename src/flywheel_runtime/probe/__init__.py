"""flywheel_runtime.probe"""
