import pytest

from protembed.adapters.base import ESM_ALPHABET
from protembed.demo.proteins import read_proteins
from protembed.embedder import Records
from protembed.errors import RejectedSequence, UserError
from protembed.sequences import (
    clean_sequence,
    fasta_accession,
    read_fasta,
    windows,
)


def test_clean_sequence_normalises_case_whitespace_and_stop():
    assert clean_sequence(" mkt ay\nIAK* ", ESM_ALPHABET) == "MKTAYIAK"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("", "empty sequence"), ("  *", "empty sequence"), ("MKT1A", "'1'"), ("MK-TA", "'-'")],
)
def test_clean_sequence_rejects_with_reason(raw, reason):
    with pytest.raises(RejectedSequence, match=reason):
        clean_sequence(raw, ESM_ALPHABET)


@pytest.mark.parametrize(
    ("length", "window", "overlap"),
    [(3000, 1022, 256), (1023, 1022, 0), (5000, 100, 99), (10, 20, 5)],
)
def test_windows_cover_every_residue_within_size(length, window, overlap):
    spans = windows(length, window, overlap)
    covered = set()
    for start, end in spans:
        assert 0 <= start < end <= length and end - start <= window
        covered.update(range(start, end))
    assert covered == set(range(length))
    assert spans[0][0] == 0 and spans[-1][1] == length


# Two UniProt records over several lines, blank lines between and inside them, a record of
# another source whose header carries key=value fields, and one without a sequence.
FASTA = (
    "\n"
    ">sp|P14835|PSBH_SYNY3 Photosystem II protein H OS=Synechocystis GN=psbH\n"
    "MAQRTRLGDI\n"
    "LRPLN SEYGK\n"
    "\n"
    "VVPG\n"
    ">tr|A0A0B4|A0A0B4_ECOLI Beta-lactamase\n"
    "MSIQHFRVAL\n"
    "\n"
    ">blaTEM-12 family=TEM ambler_class=A source=M88143.1:368-1228 class A TEM-12\n"
    "MKTAYIAK\n"
    "QRQISF\n"
    ">empty\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["unix", "windows"])
def test_read_fasta_joins_lines_and_skips_blank_ones(tmp_path, newline):
    path = tmp_path / "proteins.fasta"
    path.write_bytes(FASTA.replace("\n", newline).encode())
    assert read_fasta(path) == [
        (
            "sp|P14835|PSBH_SYNY3 Photosystem II protein H OS=Synechocystis GN=psbH",
            "MAQRTRLGDILRPLNSEYGKVVPG",
        ),
        ("tr|A0A0B4|A0A0B4_ECOLI Beta-lactamase", "MSIQHFRVAL"),
        (
            "blaTEM-12 family=TEM ambler_class=A source=M88143.1:368-1228 class A TEM-12",
            "MKTAYIAKQRQISF",
        ),
        ("empty", ""),
    ]
    records = Records.from_fasta(path)
    assert records.ids == ["P14835", "A0A0B4", "blaTEM-12", "empty"]
    assert records.sequences == ["MAQRTRLGDILRPLNSEYGKVVPG", "MSIQHFRVAL", "MKTAYIAKQRQISF", ""]
    proteins = read_proteins(path, attributes=("family", "ambler_class", "GN"))
    assert [p["accession_id"] for p in proteins] == records.ids
    assert [p["sequence"] for p in proteins] == records.sequences
    assert proteins[0]["GN"] == "psbH" and "family" not in proteins[0]
    assert proteins[2] == {
        "accession_id": "blaTEM-12",
        "sequence": "MKTAYIAKQRQISF",
        "family": "TEM",
        "ambler_class": "A",
    }


@pytest.mark.parametrize(
    ("header", "accession"),
    [
        ("sp|P14835|PSBH_SYNY3 Photosystem II", "P14835"),
        ("P14835 Photosystem II", "P14835"),
        ("  P14835", "P14835"),
        ("gi|12345 two fields only", "gi|12345"),
        ("blaTEM-12 family=TEM", "blaTEM-12"),
    ],
)
def test_fasta_accession_takes_uniprots_accession_else_the_first_word(header, accession):
    assert fasta_accession(header) == accession


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (">P1\nMKT\n>\nMKT\n", "line 3: a header without an id"),
        (">P1\nMKT\n>   \r\nMKT\n", "line 3: a header without an id"),
        ("MKT\n>P1\nMKT\n", "line 1: sequence before any '>' header"),
    ],
)
def test_read_fasta_names_the_line_it_cannot_read(tmp_path, text, error):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(UserError, match=f"FASTA file {path} {error}"):
        read_fasta(path)


def test_a_missing_or_binary_fasta_file_is_a_user_error(tmp_path):
    missing = tmp_path / "nowhere.fasta"
    for read in (read_fasta, Records.from_fasta, read_proteins):
        with pytest.raises(UserError, match=f"FASTA file {missing} does not exist"):
            read(missing)
    binary = tmp_path / "vectors.parquet"
    binary.write_bytes(b"PAR1\xff\xfe\x00")
    with pytest.raises(UserError, match=f"FASTA file {binary} is not text"):
        read_fasta(binary)
