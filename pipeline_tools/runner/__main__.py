"""``python -m pipeline_tools.runner``: the local trigger runner's command line."""

from pipeline_tools.runner.process import main

main()
