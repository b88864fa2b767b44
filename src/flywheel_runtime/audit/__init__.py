"""flywheel_runtime.audit"""
