"""`emp demo`: a local fleet (simulated workers and a GPU box with stand-in ComfyUIs) on a private Redis.

``run`` drives it, ``fleet`` is the pure description of its workers and jobs, ``view`` its screen.
"""
