"""Results as data: what every analysis reports, free of torch so that reports can be read,
judged and re-rendered without the machinery that made them (DESIGN: the results layer)."""
