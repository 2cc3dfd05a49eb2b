"""CoronaHack: the images of Dataset_type TRAIN/TEST sit in the folders train/ and test/."""


def rows(table, ctx):
    table["folder"] = [v.lower() for v in table["Dataset_type"]]
    return table
