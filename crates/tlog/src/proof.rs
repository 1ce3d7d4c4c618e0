//! Inclusion and consistency proofs, RFC 9162 §2.1.3 and §2.1.4.

use crate::hash::{EMPTY_ROOT, Hash, node_hash, root};

/// Why a proof could not be generated or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} exceeds the {available} leaves available")]
    SizeOutOfRange { size: u64, available: u64 },
    #[error("invalid tree sizes: old {old} is larger than new {new}")]
    InvalidSizes { old: u64, new: u64 },
    #[error("proof is empty")]
    EmptyProof,
    #[error("proof has the wrong number of elements")]
    WrongLength,
    #[error("computed root does not match the expected root")]
    RootMismatch,
}

fn check_size(leaves: &[Hash], size: u64) -> Result<usize, ProofError> {
    let available = leaves.len() as u64;
    if size > available {
        return Err(ProofError::SizeOutOfRange { size, available });
    }
    // size <= leaves.len(), so it fits in usize.
    Ok(size as usize)
}

/// Inclusion proof (audit path) for leaf `index` in the tree formed by the
/// first `size` of `leaves` (RFC 9162 §2.1.3.1, `PATH(m, D_n)`).
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    let n = check_size(leaves, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    inclusion_path_with(index, n as u64, |a, b| {
        Ok::<_, ProofError>(root(&leaves[a as usize..b as usize]))
    })
}

/// `PATH(index, D[0:size])` computed from any source of subtree hashes:
/// `mth(a, b)` must return the Merkle Tree Hash of leaves `a..b`. Every range
/// asked for is an RFC 6962 subtree, so a store that keeps the hashes of
/// complete subtrees answers each in O(log n). Requires `index < size`.
pub fn inclusion_path_with<E>(
    index: u64,
    size: u64,
    mut mth: impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    // Iterative PATH(m, D[lo:hi]); siblings are found top-down and emitted
    // bottom-up.
    let (mut lo, mut hi) = (0u64, size);
    let mut rev = Vec::new();
    while hi - lo > 1 {
        let k = split_point64(hi - lo);
        if index - lo < k {
            rev.push((lo + k, hi));
            hi = lo + k;
        } else {
            rev.push((lo, lo + k));
            lo += k;
        }
    }
    let mut out = Vec::with_capacity(rev.len());
    for &(a, b) in rev.iter().rev() {
        out.push(mth(a, b)?);
    }
    Ok(out)
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub(crate) fn split_point64(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Verify an inclusion proof exactly as in RFC 9162 §2.1.3.2.
///
/// As in the RFC, `size` only selects the hashing order: a proof can verify
/// for several sizes that give the same path shape. Bind size and root
/// together (e.g. via a signed [`crate::Checkpoint`]).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // 1. leaf_index must be below tree_size.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // 2. fn = leaf_index, sn = tree_size - 1.
    let mut fn_ = index;
    let mut sn = size - 1;
    // 3. r = hash.
    let mut r = *leaf_hash;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, stop and fail.
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. r = HASH(0x01 || p || r)
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, right-shift fn and sn equally until
            //     either LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise r = HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. sn must be 0 and r must equal root.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Consistency proof between the trees formed by the first `old` and the
/// first `new` of `leaves` (RFC 9162 §2.1.4.1, `PROOF(m, D_n)`).
///
/// The RFC defines proofs for `0 < old < new`; for `old == 0` or
/// `old == new` the proof is empty.
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    let n = check_size(leaves, new)?;
    if old > new {
        return Err(ProofError::InvalidSizes { old, new });
    }
    consistency_proof_with(old, n as u64, |a, b| {
        Ok::<_, ProofError>(root(&leaves[a as usize..b as usize]))
    })
}

/// `PROOF(old, D[0:new])` from any source of subtree hashes (see
/// [`inclusion_path_with`]). Empty for `old == 0` or `old >= new`.
pub fn consistency_proof_with<E>(
    old: u64,
    new: u64,
    mut mth: impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    if old == 0 || old >= new {
        return Ok(Vec::new());
    }
    // Iterative SUBPROOF(m, D[lo:hi], b); siblings found top-down, emitted
    // bottom-up after the optional head.
    let (mut lo, mut hi, mut m, mut b) = (0u64, new, old, true);
    let mut rev = Vec::new();
    let mut head = None;
    loop {
        let n = hi - lo;
        if m == n {
            if !b {
                head = Some((lo, hi));
            }
            break;
        }
        let k = split_point64(n);
        if m <= k {
            rev.push((lo + k, hi));
            hi = lo + k;
        } else {
            rev.push((lo, lo + k));
            lo += k;
            m -= k;
            b = false;
        }
    }
    let mut out = Vec::with_capacity(rev.len() + 1);
    if let Some((a, z)) = head {
        out.push(mth(a, z)?);
    }
    for &(a, z) in rev.iter().rev() {
        out.push(mth(a, z)?);
    }
    Ok(out)
}

/// Verify a consistency proof exactly as in RFC 9162 §2.1.4.2.
///
/// As with [`verify_inclusion`], sizes are bound to roots only by whatever
/// authenticated them (a signed checkpoint), not by the proof itself.
///
/// The RFC covers `0 < old < new`. Outside that range: `old > new` fails;
/// `old == new` succeeds only with an empty proof and equal roots; `old == 0`
/// succeeds only with an empty proof and `old_root == EMPTY_ROOT`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::InvalidSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *old_root == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // 1. If consistency_path is empty, stop and fail.
    if proof.is_empty() {
        return Err(ProofError::EmptyProof);
    }
    // 2. If first is an exact power of 2, prepend first_hash to the path.
    let (head, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // 3. fn = first - 1, sn = second - 1.
    let mut fn_ = old - 1;
    let mut sn = new - 1;
    // 4. If LSB(fn) is set, right-shift both until LSB(fn) is not set.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5. fr = sr = first value of the path.
    let mut fr = head;
    let mut sr = head;
    // 6. For each subsequent value c in the path:
    for c in rest {
        // a. If sn is 0, stop and fail.
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        // b. If LSB(fn) is set, or if fn is equal to sn:
        if fn_ & 1 == 1 || fn_ == sn {
            // i. fr = HASH(0x01 || c || fr), sr = HASH(0x01 || c || sr).
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            // ii. If LSB(fn) is not set, right-shift both until either
            //     LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise sr = HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Right-shift both fn and sn one time.
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7. fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// The 7-leaf worked example (C2SP merkle-tree.md / RFC 6962 §2.1.3),
    /// named as in /work/shared/reference/formats.md: a..g are the leaf
    /// hashes of d0..d6, h = node(a,b), i = node(c,d), j = node(e,f),
    /// k = node(h,i), l = node(j,g), root = node(k,l).
    /// (RFC 6962's own figure letters the nodes differently; the tree and
    /// the proofs are the same.)
    struct Seven {
        leaves: Vec<Hash>,
        a: Hash,
        b: Hash,
        c: Hash,
        d: Hash,
        g: Hash,
        h: Hash,
        i: Hash,
        j: Hash,
        k: Hash,
        l: Hash,
        root: Hash,
    }

    fn seven() -> Seven {
        let data: [&[u8]; 7] = [b"d0", b"d1", b"d2", b"d3", b"d4", b"d5", b"d6"];
        let lv: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let [a, b, c, d, e, f, g] = lv.clone().try_into().unwrap();
        let h = node_hash(&a, &b);
        let i = node_hash(&c, &d);
        let j = node_hash(&e, &f);
        let k = node_hash(&h, &i);
        let l = node_hash(&j, &g);
        let root = node_hash(&k, &l);
        Seven {
            leaves: lv,
            a,
            b,
            c,
            d,
            g,
            h,
            i,
            j,
            k,
            l,
            root,
        }
    }

    #[test]
    fn seven_leaf_root() {
        let t = seven();
        assert_eq!(root(&t.leaves), t.root);
        assert_eq!(root(&t.leaves[..3]), node_hash(&t.h, &t.c));
        assert_eq!(root(&t.leaves[..4]), t.k);
        assert_eq!(root(&t.leaves[..6]), node_hash(&t.k, &t.j));
    }

    #[test]
    fn seven_leaf_inclusion_vectors() {
        let t = seven();
        let p0 = inclusion_proof(&t.leaves, 0, 7).unwrap();
        assert_eq!(p0, vec![t.b, t.i, t.l]);
        verify_inclusion(0, 7, &t.a, &p0, &t.root).unwrap();
        let p6 = inclusion_proof(&t.leaves, 6, 7).unwrap();
        assert_eq!(p6, vec![t.j, t.k]);
        verify_inclusion(6, 7, &t.g, &p6, &t.root).unwrap();
        // Swapping the order of elements must fail.
        assert!(verify_inclusion(0, 7, &t.a, &[t.i, t.b, t.l], &t.root).is_err());
        assert!(verify_inclusion(6, 7, &t.g, &[t.k, t.j], &t.root).is_err());
    }

    #[test]
    fn seven_leaf_consistency_vectors() {
        let t = seven();
        let r3 = root(&t.leaves[..3]);
        let r4 = root(&t.leaves[..4]);
        let r6 = root(&t.leaves[..6]);
        let p37 = consistency_proof(&t.leaves, 3, 7).unwrap();
        assert_eq!(p37, vec![t.c, t.d, t.h, t.l]);
        verify_consistency(3, 7, &r3, &t.root, &p37).unwrap();
        let p47 = consistency_proof(&t.leaves, 4, 7).unwrap();
        assert_eq!(p47, vec![t.l]);
        verify_consistency(4, 7, &r4, &t.root, &p47).unwrap();
        let p67 = consistency_proof(&t.leaves, 6, 7).unwrap();
        assert_eq!(p67, vec![t.j, t.g, t.k]);
        verify_consistency(6, 7, &r6, &t.root, &p67).unwrap();
        // Mismatched sizes.
        assert!(verify_consistency(3, 7, &r3, &t.root, &p47).is_err());
        assert!(verify_consistency(4, 6, &r4, &r6, &p47).is_err());
        // A proof does not bind the sizes on its own: [l] with r4 also
        // "proves" 4 -> 6 against the size-7 root, because the verifier only
        // uses the sizes to decide the hashing order. Sizes are bound by the
        // signed checkpoint that carries (size, root) together.
        assert!(verify_consistency(4, 6, &r4, &t.root, &p47).is_ok());
    }

    #[test]
    fn edge_cases() {
        let lv = leaves(5);
        let r5 = root(&lv);
        assert_eq!(
            inclusion_proof(&lv, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&lv, 0, 6),
            Err(ProofError::SizeOutOfRange {
                size: 6,
                available: 5
            })
        );
        assert_eq!(inclusion_proof(&lv, 0, 1).unwrap(), Vec::<Hash>::new());
        verify_inclusion(0, 1, &lv[0], &[], &lv[0]).unwrap();
        assert!(verify_inclusion(0, 0, &lv[0], &[], &lv[0]).is_err());
        assert!(verify_inclusion(0, 1, &lv[0], &[lv[1]], &lv[0]).is_err());
        // old == new and old == 0.
        assert!(consistency_proof(&lv, 5, 5).unwrap().is_empty());
        verify_consistency(5, 5, &r5, &r5, &[]).unwrap();
        assert!(verify_consistency(5, 5, &r5, &r5, &[r5]).is_err());
        assert!(verify_consistency(5, 5, &r5, &lv[0], &[]).is_err());
        verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[]).unwrap();
        assert!(verify_consistency(0, 5, &r5, &r5, &[]).is_err());
        assert!(verify_consistency(6, 5, &r5, &r5, &[]).is_err());
        assert_eq!(
            verify_consistency(2, 5, &root(&lv[..2]), &r5, &[]),
            Err(ProofError::EmptyProof)
        );
        assert!(consistency_proof(&lv, 6, 5).is_err());
        assert!(consistency_proof(&lv, 1, 6).is_err());
    }

    /// Exhaustive check of every index and every pair for small trees.
    #[test]
    fn exhaustive_small_trees() {
        let lv = leaves(40);
        let roots: Vec<Hash> = (0..=40).map(|n| root(&lv[..n])).collect();
        for n in 1..=40u64 {
            for i in 0..n {
                let p = inclusion_proof(&lv, i, n).unwrap();
                verify_inclusion(i, n, &lv[i as usize], &p, &roots[n as usize]).unwrap();
            }
            for m in 0..=n {
                let p = consistency_proof(&lv, m, n).unwrap();
                verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p).unwrap();
            }
        }
    }

    fn flip(p: &[Hash], elem: usize, byte: usize, bit: u8) -> Vec<Hash> {
        let mut q = p.to_vec();
        q[elem][byte] ^= 1 << bit;
        q
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]

        /// Every index of a random tree: proofs verify, and every proof
        /// element with one flipped bit, a wrong index, or a wrong size (with
        /// that size's root) fails.
        #[test]
        fn inclusion_all_indices(n in 1u64..=300, byte in 0usize..32, bit in 0u8..8) {
            let lv = leaves(n as usize + 1);
            let r = root(&lv[..n as usize]);
            let r_next = root(&lv);
            let r_prev = root(&lv[..n as usize - 1]);
            for i in 0..n {
                let leaf = &lv[i as usize];
                let p = inclusion_proof(&lv, i, n).unwrap();
                prop_assert!(verify_inclusion(i, n, leaf, &p, &r).is_ok());
                for e in 0..p.len() {
                    prop_assert!(verify_inclusion(i, n, leaf, &flip(&p, e, byte, bit), &r).is_err());
                }
                prop_assert!(verify_inclusion(i ^ 1, n, leaf, &p, &r).is_err());
                prop_assert!(verify_inclusion(i, n + 1, leaf, &p, &r_next).is_err());
                if n - 1 > i {
                    prop_assert!(verify_inclusion(i, n - 1, leaf, &p, &r_prev).is_err());
                }
                if n > 1 {
                    prop_assert!(verify_inclusion(i, n, leaf, &p[..p.len() - 1], &r).is_err());
                }
                let mut longer = p.clone();
                longer.push(r);
                prop_assert!(verify_inclusion(i, n, leaf, &longer, &r).is_err());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3))]

        /// Every pair (old, new) up to a random size verifies.
        #[test]
        fn consistency_all_pairs(n in 1u64..=300) {
            let lv = leaves(n as usize);
            let roots: Vec<Hash> = (0..=n as usize).map(|m| root(&lv[..m])).collect();
            for new in 1..=n {
                for old in 0..=new {
                    let p = consistency_proof(&lv, old, new).unwrap();
                    prop_assert!(verify_consistency(
                        old, new, &roots[old as usize], &roots[new as usize], &p
                    ).is_ok());
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A random pair: flipping any bit-position in any element, a wrong
        /// size, or truncation/extension of the proof fails.
        #[test]
        fn consistency_tamper(n in 2u64..=300, a in any::<u64>(), byte in 0usize..32, bit in 0u8..8) {
            let lv = leaves(n as usize + 1);
            let r_at = |m: u64| root(&lv[..m as usize]);
            let new = 2 + a % (n - 1);
            let old = 1 + (a / 301) % (new - 1);
            let (ro, rn) = (root(&lv[..old as usize]), root(&lv[..new as usize]));
            let p = consistency_proof(&lv, old, new).unwrap();
            prop_assert!(verify_consistency(old, new, &ro, &rn, &p).is_ok());
            for e in 0..p.len() {
                prop_assert!(verify_consistency(old, new, &ro, &rn, &flip(&p, e, byte, bit)).is_err());
            }
            prop_assert!(verify_consistency(old + 1, new, &r_at(old + 1), &rn, &p).is_err());
            prop_assert!(verify_consistency(old, new + 1, &ro, &r_at(new + 1), &p).is_err());
            prop_assert!(verify_consistency(old - 1, new, &r_at(old - 1), &rn, &p).is_err());
            prop_assert!(verify_consistency(old, new, &rn, &ro, &p).is_err());
            prop_assert!(verify_consistency(old, new, &ro, &rn, &p[..p.len() - 1]).is_err());
            let mut longer = p.clone();
            longer.push(rn);
            prop_assert!(verify_consistency(old, new, &ro, &rn, &longer).is_err());
        }

        /// Verifiers never panic on arbitrary input.
        #[test]
        fn verifiers_never_panic(
            a in any::<u64>(),
            b in any::<u64>(),
            h1 in any::<[u8; 32]>(),
            h2 in any::<[u8; 32]>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..80),
        ) {
            let _ = verify_inclusion(a, b, &h1, &proof, &h2);
            let _ = verify_consistency(a, b, &h1, &h2, &proof);
            let _ = verify_inclusion(a % 1000, b % 1000, &h1, &proof, &h2);
            let _ = verify_consistency(a % 1000, b % 1000, &h1, &h2, &proof);
            let _ = verify_consistency(u64::MAX, u64::MAX, &h1, &h2, &proof);
            let _ = verify_consistency(u64::MAX - 1, u64::MAX, &h1, &h2, &proof);
        }
    }
}
