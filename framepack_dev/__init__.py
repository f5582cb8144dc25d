"""Development tools shared by the tests, scripts/demo.py and the benchmarks: a real ComfyUI server in a throw-away
folder, random-weight FramePack models, tiny model files for a CPU smoke run, and diffusers as a reference.

Neither the node pack nor the API client imports this package.
"""
