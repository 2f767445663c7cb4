"""The README's main job, end to end on LFW: embed a few people, train under MPC, recognise.

    lfw.py   run_demo, format_report: choose people, embed, train (MPC and plaintext), recognise, report
    cli.py   `ppfr demo`
"""
