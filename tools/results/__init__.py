"""Results of finished runs: their logs and facts (``logs``, ``runs``), tables in four formats
(``tables``, ``render``), figures (``figures``) and the TaskRes residual analysis (``residuals``).

``python tools/parse_test_res.py`` is the command line over all of them. The figure and residual
modules import matplotlib and torch only when used, so reading logs stays light.
"""
