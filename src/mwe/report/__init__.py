"""The pieces of `mwe report` (mwe.pipeline.report.write_report puts them together):

    inputs         read and check sweep, evaluate and run folders into one Inputs
    jsonfile       their JSON files read strictly (NaN and infinities refused, with the field)
    analysis       what the common sections show (SECTIONS: their ids and headings, in order)
    cards          the dataset cards' section
    agreement      model agreement and trend reversals (from sweep folders)
    validation     human validation (from mwe validate stats folders)
    methods_input  the answer-order fields of summaries and methods.json, checked
    methods_section  answer order (--orders all) and log-probs vs replies (--score
                   logprob,text)
    (each family's own section comes from its Family.report, in mwe.families)
    figures        the figures: embedded in the page, saved as PNGs beside it
    render         the page from the jinja2 templates in mwe/templates/report/
"""
