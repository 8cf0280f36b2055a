"""lie_ray's own attacks, one module per attack (or family of one paper), each declaring its
``AttackSpec``s in ``SPECS``. ``BUILTIN`` lists the modules in the order the tables, the
curves and the engine meet their attacks."""

from lie_ray.attacks.catalogue import (
    autoattack,
    autoattack_rand,
    bpda,
    encrypted_input,
    eot,
    paper,
    pba,
    recovered_key,
    sanity,
    square,
    transfer,
)

# Within the paper's readings (pgd, paper-literal, bpda-identity) bpda follows bpda-identity,
# whose run it reuses; the sanity runs come last, after every attack.
BUILTIN = (
    *paper.SPECS,
    *bpda.SPECS,
    *eot.SPECS,
    *transfer.SPECS,
    *square.SPECS,
    *autoattack.SPECS,
    *autoattack_rand.SPECS,
    *pba.SPECS,
    *recovered_key.SPECS,
    *encrypted_input.SPECS,
    *sanity.SPECS,
)
