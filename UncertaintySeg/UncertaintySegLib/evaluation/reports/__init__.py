"""What an evaluation writes: metrics.json, CSV tables, reliability and overlay PNGs, report.html."""
