//! Planning of the structural diff over plain keys (no PyO3 types).
//!
//! `py::diff` walks the Python state trees, hashes demos and names modules, and
//! asks these planners which items to remove, reorder, keep and add. The
//! pure-Python twin (`desiru/_pure/diff.py`) mirrors them step for step, so both
//! produce identical edits.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The edits of one list: which items go, how the rest are permuted, which come.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPlan {
    /// Old indices to remove, highest first (so each index is valid when applied).
    pub removed: Vec<usize>,
    /// After the removals, the list becomes `[cur[i] for i in order]`; `None` if
    /// the surviving items are already in the new order.
    pub order: Option<Vec<usize>>,
    /// New indices to insert, lowest first.
    pub added: Vec<usize>,
}

/// Mark one longest strictly increasing subsequence of `seq` (distinct values).
///
/// Patience sorting with predecessor links, O(n log n); ties cannot occur, so
/// the result is deterministic (the twin implements the same algorithm).
pub fn lis_mask(seq: &[usize]) -> Vec<bool> {
    let mut tails: Vec<usize> = Vec::new(); // index in seq of the tail of each length
    let mut tail_vals: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; seq.len()];
    for (k, &v) in seq.iter().enumerate() {
        let pos = tail_vals.partition_point(|&t| t < v);
        if pos > 0 {
            if let (Some(slot), Some(&t)) = (prev.get_mut(k), tails.get(pos - 1)) {
                *slot = Some(t);
            }
        }
        match (tails.get_mut(pos), tail_vals.get_mut(pos)) {
            (Some(t), Some(tv)) => {
                *t = k;
                *tv = v;
            }
            _ => {
                tails.push(k);
                tail_vals.push(v);
            }
        }
    }
    let mut keep = vec![false; seq.len()];
    let mut cur = tails.last().copied();
    while let Some(k) = cur {
        if let Some(slot) = keep.get_mut(k) {
            *slot = true;
        }
        cur = prev.get(k).copied().flatten();
    }
    keep
}

/// Plan the edits that turn the list of keys `old` into `new`.
///
/// The common prefix and suffix are kept as they are; the middle is matched as a
/// multiset (the k-th copy of a key in old pairs with its k-th copy in new).
pub fn plan_list<K: Eq + Hash>(old: &[K], new: &[K]) -> ListPlan {
    plan_window(old, new, 0, 0)
}

/// [`plan_list`] for the middle of two lists whose first `prefix` and last
/// `suffix` items the caller already found equal (so it never had to hash them).
/// `old` and `new` are the middles; indices in the plan refer to the whole lists.
pub fn plan_window<K: Eq + Hash>(old: &[K], new: &[K], prefix: usize, suffix: usize) -> ListPlan {
    let (lo, ln) = (old.len(), new.len());
    let lim = lo.min(ln);
    let p2 = old
        .iter()
        .zip(new)
        .take_while(|(a, b)| a == b)
        .count()
        .min(lim);
    let s2 = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(lim - p2)
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid = old.get(p2..lo - s2).unwrap_or_default();
    let new_mid = new.get(p2..ln - s2).unwrap_or_default();
    if old_mid.is_empty() && new_mid.is_empty() {
        return ListPlan::default();
    }
    let (p, s) = (prefix + p2, suffix + s2);
    let mut spots: HashMap<&K, VecDeque<usize>> = HashMap::with_capacity(new_mid.len());
    for (j, key) in new_mid.iter().enumerate() {
        spots.entry(key).or_default().push_back(j);
    }
    let mut removed = Vec::new();
    let mut survivors: Vec<usize> = Vec::with_capacity(old_mid.len().min(new_mid.len()));
    let mut taken = vec![false; new_mid.len()];
    for (i, key) in old_mid.iter().enumerate() {
        match spots.get_mut(key).and_then(VecDeque::pop_front) {
            Some(j) => {
                if let Some(t) = taken.get_mut(j) {
                    *t = true;
                }
                survivors.push(j);
            }
            None => removed.push(p + i),
        }
    }
    removed.reverse();
    let order = if survivors.windows(2).any(|w| matches!(w, [a, b] if a > b)) {
        let mut ranked: Vec<usize> = (0..survivors.len()).collect();
        ranked.sort_unstable_by_key(|&r| survivors.get(r).copied().unwrap_or(usize::MAX));
        let n = survivors.len();
        let mut order = Vec::with_capacity(p + n + s);
        order.extend(0..p);
        order.extend(ranked.iter().map(|&r| p + r));
        order.extend(p + n..p + n + s);
        Some(order)
    } else {
        None
    };
    let added = taken
        .iter()
        .enumerate()
        .filter(|(_, &t)| !t)
        .map(|(j, _)| p + j)
        .collect();
    ListPlan {
        removed,
        order,
        added,
    }
}

/// The edits of a module list matched by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModulePlan {
    /// Old indices of modules to remove (gone or moved), ascending.
    pub removed: Vec<usize>,
    /// `(old index, new index)` of modules kept in place, to diff recursively.
    pub kept: Vec<(usize, usize)>,
    /// New indices of modules to add (new or moved), ascending.
    pub added: Vec<usize>,
}

/// Plan a module list: modules that keep their relative order (a longest
/// increasing run of new positions) stay; the others that moved are removed and
/// added again.
pub fn plan_modules<N: Eq + Hash>(old_names: &[N], new_names: &[N]) -> ModulePlan {
    let new_index: HashMap<&N, usize> = new_names.iter().enumerate().map(|(j, n)| (n, j)).collect();
    let present: HashMap<&N, ()> = old_names.iter().map(|n| (n, ())).collect();
    let pairs: Vec<(usize, usize)> = old_names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| new_index.get(n).map(|&j| (i, j)))
        .collect();
    let news: Vec<usize> = pairs.iter().map(|&(_, j)| j).collect();
    let keep = lis_mask(&news);
    let mut removed: Vec<usize> = old_names
        .iter()
        .enumerate()
        .filter(|(_, n)| !new_index.contains_key(n))
        .map(|(i, _)| i)
        .collect();
    let mut added: Vec<usize> = new_names
        .iter()
        .enumerate()
        .filter(|(_, n)| !present.contains_key(n))
        .map(|(j, _)| j)
        .collect();
    let mut kept = Vec::with_capacity(pairs.len());
    for (&(i, j), &k) in pairs.iter().zip(&keep) {
        if k {
            kept.push((i, j));
        } else {
            removed.push(i);
            added.push(j);
        }
    }
    removed.sort_unstable();
    added.sort_unstable();
    ModulePlan {
        removed,
        kept,
        added,
    }
}

/// Whether `order` is a permutation of `0..len`.
pub fn is_permutation(order: &[usize], len: usize) -> bool {
    if order.len() != len {
        return false;
    }
    let mut seen = vec![false; len];
    for &i in order {
        match seen.get_mut(i) {
            Some(s) if !*s => *s = true,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Apply a plan the way `apply_edits` does, to check it reaches `new`.
    fn apply(old: &[u32], new: &[u32], plan: &ListPlan) -> Vec<u32> {
        let mut cur = old.to_vec();
        for &i in &plan.removed {
            cur.remove(i);
        }
        if let Some(order) = &plan.order {
            assert!(is_permutation(order, cur.len()));
            cur = order.iter().map(|&i| cur[i]).collect();
        }
        for &j in &plan.added {
            cur.insert(j, new[j]);
        }
        cur
    }

    #[test]
    fn lis_examples() {
        assert_eq!(lis_mask(&[]), Vec::<bool>::new());
        assert_eq!(lis_mask(&[0, 1, 2]), vec![true; 3]);
        assert_eq!(lis_mask(&[2, 1, 0]), vec![false, false, true]);
        assert_eq!(
            lis_mask(&[3, 0, 1, 4, 2]),
            vec![false, true, true, false, true]
        );
    }

    #[test]
    fn one_change_among_many_is_one_remove_and_one_add() {
        let old: Vec<u32> = (0..100_000).collect();
        let mut new = old.clone();
        new[50_000] = 1_000_000;
        let plan = plan_list(&old, &new);
        assert_eq!(
            plan,
            ListPlan {
                removed: vec![50_000],
                order: None,
                added: vec![50_000]
            }
        );
    }

    #[test]
    fn plans_reach_the_new_list() {
        // A small deterministic generator (xorshift) of list pairs with repeats.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as u32
        };
        for _ in 0..2_000 {
            let old: Vec<u32> = (0..next(12)).map(|_| next(6)).collect();
            let new: Vec<u32> = (0..next(12)).map(|_| next(6)).collect();
            let plan = plan_list(&old, &new);
            assert_eq!(apply(&old, &new, &plan), new, "{old:?} -> {new:?}");
            assert!(plan.removed.windows(2).all(|w| w[0] > w[1]));
            assert!(plan.added.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(plan_list(&[1, 2, 3], &[1, 2, 3]), ListPlan::default());
    }

    #[test]
    fn module_plan_moves_few() {
        let plan = plan_modules(&["a", "b", "c", "d"], &["b", "c", "d", "a", "e"]);
        assert_eq!(plan.removed, vec![0]);
        assert_eq!(plan.kept, vec![(1, 0), (2, 1), (3, 2)]);
        assert_eq!(plan.added, vec![3, 4]);
        let plan = plan_modules(&["a", "b"], &["c"]);
        assert_eq!(
            (plan.removed, plan.kept, plan.added),
            (vec![0, 1], vec![], vec![0])
        );
    }

    #[test]
    fn permutations() {
        assert!(is_permutation(&[2, 0, 1], 3));
        assert!(!is_permutation(&[0, 0, 1], 3));
        assert!(!is_permutation(&[0, 3, 1], 3));
        assert!(!is_permutation(&[0, 1], 3));
        assert!(is_permutation(&[], 0));
    }
}
