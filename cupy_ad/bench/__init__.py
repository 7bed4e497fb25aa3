"""``python -m cupy_ad bench``: primal vs jvp per decomposition and size, optionally against JAX and
PyTorch (``cli`` the command line, ``cases`` what is timed, ``timing`` how, ``peers`` the JAX and
PyTorch processes, ``breakdown`` the time per primitive, ``report`` the table and figure). Installed
with the package; the ``bench`` extra adds matplotlib (``--plot``) and tqdm (progress bars)."""
