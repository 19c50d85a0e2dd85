import pytest

from svdq_edge.data import DataError, read_glue_tsv
from tests.conftest import shared_path


def test_layouts_are_recognised(tmp_path):
    f = tmp_path / "rte.tsv"
    f.write_text("index\tsentence1\tsentence2\tlabel\n0\tA cat.\tAn animal.\tentailment\n1\tX\tY\tnot_entailment\n")
    d = read_glue_tsv(f)
    assert d.task == "rte" and d.labels == [0, 1] and d.text_b == ["An animal.", "Y"]
    g = tmp_path / "sst.tsv"
    g.write_text('sentence\tlabel\nit \'s "good" . \t1\n')
    d = read_glue_tsv(g)
    assert d.task == "sst2" and d.text_a == ['it \'s "good" .'] and d.text_b is None


def test_malformed_rows_name_the_line(tmp_path):
    f = tmp_path / "x.tsv"
    f.write_text("sentence\tlabel\ngood\t1\nbad row\n")
    with pytest.raises(DataError, match=":3:"):
        read_glue_tsv(f)
    f.write_text("sentence\tlabel\ngood\tmaybe\n")
    with pytest.raises(DataError, match="unknown label"):
        read_glue_tsv(f)


@pytest.mark.integration
def test_shared_glue_files_have_the_documented_row_counts():
    assert len(read_glue_tsv(shared_path("data", "glue", "sst2", "dev.tsv"))) == 872
    rte = read_glue_tsv(shared_path("data", "glue", "rte", "dev.tsv"))
    assert len(rte) == 277 and rte.labels.count(0) == 146
