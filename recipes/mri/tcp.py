"""TCP: the BIDS subject label is the NDA subjectkey without underscores (CLIMB's drop_underscore)."""


def rows(table, ctx):
    table["subject"] = table["subjectkey"].str.replace("_", "", regex=False)
    return table
