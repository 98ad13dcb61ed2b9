"""`bench report` as a package: schema (what a summary holds), load (runs → variants, duplicates
counted once), contrasts and findings (the pairwise claims, Holm-corrected, and the generated
sentences), tables, figures_accuracy / figures_curves (on plotting's shared styles), render
(markdown and HTML from one list of blocks) and build (the report's order; `write_report`)."""
from bench.report.build import write_report
from bench.report.load import Variant, check_filters, load_runs
from bench.report.tables import stat_cell, test_time_by_split_table

__all__ = ["Variant", "check_filters", "load_runs", "stat_cell", "test_time_by_split_table", "write_report"]
