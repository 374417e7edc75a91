"""The problem and its science: features, function classes, configuration, regimes,
phase times, plots, reports and the command line."""
