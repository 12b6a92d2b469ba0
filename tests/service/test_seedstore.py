"""The seed store's claims (issue 13): what a refused request added is removed again, and nothing another
request holds, or an accepted one committed, or that was there before, is ever removed."""

from __future__ import annotations

import threading
from pathlib import Path

from roomoperator.service.seedstore import Claim, SeedStore

LIMIT = 1 << 20


def keep(store: SeedStore, data: bytes, claim: Claim) -> str:
    incoming = store.incoming(limit=LIMIT)
    incoming.write(data)
    return store.keep(incoming, claim=claim)


def files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def test_a_released_claim_leaves_nothing_it_added(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    claim = store.claim()
    manifest = {"seeds/a.md": keep(store, b"a", claim), "seeds/b.md": keep(store, b"b", claim)}
    tree = store.tree(manifest, claim=claim)
    assert (tree / "seeds/a.md").read_bytes() == b"a"
    claim.release()
    assert files(store.folder) == set()
    assert not tree.exists()


def test_what_was_kept_before_stays_when_a_claim_is_released(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    first = store.claim()
    tree = store.tree({"seeds/a.md": keep(store, b"a", first)}, claim=first)
    first.commit()
    kept = files(store.folder)
    refused = store.claim()
    manifest = {"seeds/a.md": keep(store, b"a", refused), "seeds/b.md": keep(store, b"b", refused)}
    store.tree(manifest, claim=refused)
    assert store.tree({"seeds/a.md": manifest["seeds/a.md"]}, claim=refused) == tree
    refused.release()
    assert files(store.folder) == kept


def test_a_blob_and_tree_an_accepted_request_shares_stay_whichever_decides_first(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    for accepted_first in (True, False):
        refused, accepted = store.claim(), store.claim()
        data = f"shared {accepted_first}".encode()
        refused_tree = store.tree({"s.md": keep(store, data, refused)}, claim=refused)
        digest = keep(store, data, accepted)
        tree = store.tree({"s.md": digest}, claim=accepted)
        assert tree == refused_tree
        if accepted_first:
            accepted.commit()
            refused.release()
        else:
            refused.release()
            accepted.commit()
        assert store.blob(digest).read_bytes() == data
        assert (tree / "s.md").read_bytes() == data


def test_what_two_refused_requests_share_goes_with_the_last_of_them(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    one, two = store.claim(), store.claim()
    digest = keep(store, b"x", one)
    store.copy_in(store.blob(digest), limit=LIMIT, claim=two)  # found there, still undecided: held
    one.release()
    assert store.blob(digest).exists()
    two.release()
    assert not store.blob(digest).exists()


def test_concurrent_requests_of_the_same_bytes_keep_them_for_every_accepted_one(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    start = threading.Barrier(16)
    trees: dict[int, Path] = {}

    def request(index: int) -> None:
        claim = store.claim()
        start.wait()
        trees[index] = store.tree({"s.md": keep(store, b"same bytes", claim)}, claim=claim)
        if index % 2:
            claim.commit()
        else:
            claim.release()

    threads = [threading.Thread(target=request, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, tree in trees.items():
        if index % 2:
            assert (tree / "s.md").read_bytes() == b"same bytes"
