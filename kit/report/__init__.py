"""Reports: build (report.json, report.md, loss_curve.png), scrub (nothing private leaves the
machine), dataset (the flat row and the card of a reports dataset), upload (a pull request on a Hub
dataset repo, a folder of the same files, or a bundle to send later), aggregate (`kit reports`:
many reports by recipe and hardware class)."""
