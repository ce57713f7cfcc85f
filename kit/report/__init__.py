"""Reports: build (report.json, report.md, loss_curve.png), scrub (nothing private leaves the
machine), upload (a pull request on a Hub dataset repo, or a bundle to send later)."""
