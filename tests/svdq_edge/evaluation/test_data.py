import pytest

from svdq_edge.evaluation.data import DataError, read_glue_tsv
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


def test_a_byte_order_mark_before_the_header_is_read(tmp_path):
    """MRPC's TSVs start with a UTF-8 BOM; the header must still be recognised."""
    p = tmp_path / "mrpc.tsv"
    p.write_bytes("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta b\tc d\n".encode("utf-8"))
    ds = read_glue_tsv(p)
    assert ds.task == "mrpc" and ds.text_a == ["a b"] and ds.labels == [1]


def _rte(tmp_path):
    p = tmp_path / "rte.tsv"
    p.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n")
    return p


def test_text_labels_follow_the_models_label2id(tmp_path):
    p = _rte(tmp_path)
    assert read_glue_tsv(p).labels == [0, 1]  # GLUE's order without a model
    assert read_glue_tsv(p, label2id={"LABEL_0": 0, "LABEL_1": 1}).labels == [0, 1]  # generic names: GLUE's order
    swapped = {"not_entailment": 0, "entailment": 1}  # a model trained with the other order
    assert read_glue_tsv(p, label2id=swapped).labels == [1, 0]
    assert read_glue_tsv(p, label2id={"Entailment": 1, "Not_Entailment": 0}).labels == [1, 0]
    with pytest.raises(DataError, match="unknown label 'entailment'"):
        read_glue_tsv(p, label2id={"negative": 0, "positive": 1})  # an SST-2 model on RTE data


@pytest.mark.integration
def test_the_shared_rte_model_names_its_labels():
    import json

    label2id = json.loads(shared_path("models", "minilm-l6-rte", "config.json").read_text())["label2id"]
    ds = read_glue_tsv(shared_path("data", "glue", "rte", "dev.tsv"), label2id=label2id)
    assert ds.labels == read_glue_tsv(shared_path("data", "glue", "rte", "dev.tsv")).labels  # same order here
