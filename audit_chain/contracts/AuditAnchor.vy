# pragma version ==0.4.3
"""
@title AuditAnchor
@notice Write-once daily anchors of the cloudsign audit log.
        Each day (YYYYMMDD, in the log's fixed UTC offset) maps to the RFC 9162
        Merkle root and tree size of that day's signed checkpoint. Only the
        deployer (the certification centre's address) may write, and a day can
        be written once: a second write for the same day reverts.
"""

event Anchored:
    day: indexed(uint32)
    root: bytes32
    size: uint64


struct Anchor:
    root: bytes32
    size: uint64
    block: uint64


owner: public(immutable(address))
anchors: HashMap[uint32, Anchor]


@deploy
def __init__():
    owner = msg.sender


@external
def anchor(day: uint32, root: bytes32, size: uint64):
    """
    @notice Record the checkpoint of `day`. Reverts for anyone but the owner,
            for an all-zero root, and for a day that is already anchored.
    """
    assert msg.sender == owner, "not owner"
    assert root != empty(bytes32), "empty root"
    assert self.anchors[day].root == empty(bytes32), "already anchored"
    self.anchors[day] = Anchor(root=root, size=size, block=convert(block.number, uint64))
    log Anchored(day=day, root=root, size=size)


@view
@external
def get_anchor(day: uint32) -> (bytes32, uint64, uint64):
    """
    @notice (root, size, block number) of `day`; all zero if not anchored.
    """
    a: Anchor = self.anchors[day]
    return a.root, a.size, a.block
