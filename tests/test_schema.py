import numpy as np
import pandas as pd

from encore import schema


def test_uid_runs_number_users_of_sorted_lists_and_refuse_unsorted_ones():
    uids = pd.Series(["a", "a", "b", "c", "c", "c"], dtype="str")
    np.testing.assert_array_equal(schema.uid_runs(uids), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(schema.uid_runs(uids.astype(object)), [0, 0, 1, 2, 2, 2])
    assert schema.uid_runs(pd.Series(["b", "a", "b"])) is None  # a user split in two runs is not one user
    assert len(schema.uid_runs(pd.Series([], dtype="str"))) == 0
    runs = schema.uid_runs(pd.Series(["ü1", "ü1", "ü2"]))
    np.testing.assert_array_equal(runs, pd.factorize(pd.Series(["ü1", "ü1", "ü2"]))[0])
