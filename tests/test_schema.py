import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from encore import schema


def test_uid_runs_number_users_of_sorted_lists_and_refuse_unsorted_ones():
    uids = pd.Series(["a", "a", "b", "c", "c", "c"], dtype="str")
    np.testing.assert_array_equal(schema.uid_runs(uids), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(schema.uid_runs(uids.astype(object)), [0, 0, 1, 2, 2, 2])
    assert schema.uid_runs(pd.Series(["b", "a", "b"])) is None  # a user split in two runs is not one user
    assert len(schema.uid_runs(pd.Series([], dtype="str"))) == 0
    runs = schema.uid_runs(pd.Series(["ü1", "ü1", "ü2"]))
    np.testing.assert_array_equal(runs, pd.factorize(pd.Series(["ü1", "ü1", "ü2"]))[0])


@settings(max_examples=200, deadline=None)
@given(ids=st.sets(st.integers(-50, 400), min_size=1, max_size=120),
       values=st.lists(st.integers(-60, 420), min_size=0, max_size=300), within=st.booleans())
def test_id_positions_is_searchsorted(ids, values, within):
    """Dense or sparse ids, values inside their range or not: always what a binary search gives."""
    ids = np.array(sorted(ids), np.int64)
    values = np.array(values, np.int64)
    if within:
        values = np.clip(values, ids[0], ids[-1])
    np.testing.assert_array_equal(schema.id_positions(ids, values), np.searchsorted(ids, values))
