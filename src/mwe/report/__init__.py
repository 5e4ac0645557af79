"""The pieces of `mwe report` (mwe.pipeline.report.write_report puts them together):

    inputs         read and check sweep, evaluate and run folders into one Inputs
    analysis       what the common sections show (SECTIONS: their ids and headings, in order)
    cards          the dataset cards' section
    (each family's own section comes from its Family.report, in mwe.families)
    figures        the figures: embedded in the page, saved as PNGs beside it
    render         the page from the jinja2 templates in mwe/templates/report/
"""
