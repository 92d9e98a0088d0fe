import pandas as pd

from encore import schema
from encore.ingest import ingest
from encore.io.legacy import read_legacy
from tests.conftest import small_settings


def test_real_sample_every_row_accounted_for(tmp_path, legacy_csv):
    settings = small_settings(tmp_path, lake={"legacy_csv": str(legacy_csv)})
    res = ingest(settings)
    c = res.counts
    assert c["rows_in"] == 3373 == c["rows_accepted"] + c["rows_rejected"]
    assert res.interactions["n_bids"].sum() + 0 == pd.to_numeric(read_legacy(str(legacy_csv))["counts"]).sum() - \
        res.rejects["record"].map(lambda r: int(__import__("json").loads(r)["counts"])).sum()
    assert res.interactions["sub_category"].str.contains("\r|\n").sum() == 0
    assert "Designer Toys" in set(res.interactions["sub_category"])
    assert not res.interactions["uid"].str.startswith(" ").any()
    assert set(res.listings["status"]) == {"live"} and not res.has_time


def test_salted_csv_sends_exactly_the_bad_rows(tmp_path, legacy_csv):
    head = legacy_csv.read_text().splitlines(keepends=True)[:6]
    bad = [
        '"","user_x","Memorabilia","Pop Culture Memorabilia","Poster","1","1","5"\n',
        '"u-2","user_y","Memorabilia","Pop Culture Memorabilia","Poster","1","two","5"\n',
        '"u-3","user_z","Memorabilia","Pop Culture Memorabilia","Poster","1","1","-5"\n',
        '"u-4","user_w","Memorabilia","Pop Culture Memorabilia","Poster","1","1","99999999999"\n',
        '"u-5","user_v","Memorabilia","Pop\x07 Culture","Poster","1","1","5"\n',
        head[1],
    ]
    path = tmp_path / "salted.csv"
    path.write_text("".join(head) + "".join(bad) + '"u-6","user_q","Collectible Toys","Designer\r\nToys","Bear","2","1","3"\n')
    res = ingest(small_settings(tmp_path, lake={"legacy_csv": str(path)}))
    assert list(res.rejects["reason"]) == [schema.MISSING_ID, schema.BAD_AMOUNT, schema.NEGATIVE_AMOUNT,
                                           schema.ABSURD_AMOUNT, schema.CONTROL_CHARS, "duplicate_row"]
    assert res.counts["rows_in"] == 5 + len(bad) + 1
    assert "user_" not in "".join(res.rejects["record"])  # names never leave the lake
    assert "Designer Toys" in set(res.interactions["sub_category"])
