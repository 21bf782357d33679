"""Reports: one self-contained HTML page per run (and per β sweep), built from run directories."""
