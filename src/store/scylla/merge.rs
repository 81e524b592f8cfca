//! K-way merge of sorted, independently paged sources: how a listing that spans several
//! partitions (vehicle buckets, the shards of a day) comes back in one global order without
//! reading any partition in full. Pure logic; the fetch function is the only I/O.
use std::collections::VecDeque;
use std::future::Future;

/// Returns up to `limit` items in ascending key order across `sources` sources, starting strictly
/// after `start` (when given), keeping only items for which `keep` holds.
///
/// `fetch(source, after, n)` must return that source's next at most `n` items with keys strictly
/// greater than `after`, ascending; fewer than `n` means the source is exhausted. Every source that
/// is not exhausted always has a buffered head before the next item is chosen, which is what makes
/// the output globally ordered; sources are refilled concurrently, `chunk` items at a time.
pub async fn merge_sorted<K, T, E, F, Fut>(
    sources: usize,
    start: Option<K>,
    chunk: usize,
    limit: usize,
    fetch: F,
    mut keep: impl FnMut(&T) -> bool,
) -> Result<Vec<(K, T)>, E>
where
    K: Ord + Clone,
    F: Fn(usize, Option<K>, usize) -> Fut,
    Fut: Future<Output = Result<Vec<(K, T)>, E>>,
{
    let chunk = chunk.max(1);
    let mut bufs: Vec<VecDeque<(K, T)>> = (0..sources).map(|_| VecDeque::new()).collect();
    let mut exhausted = vec![false; sources];
    let mut last: Vec<Option<K>> = vec![start; sources];
    let mut out = Vec::new();
    while out.len() < limit {
        let need: Vec<usize> = (0..sources).filter(|&i| bufs[i].is_empty() && !exhausted[i]).collect();
        let fetched = futures::future::join_all(need.iter().map(|&i| fetch(i, last[i].clone(), chunk))).await;
        for (i, rows) in need.into_iter().zip(fetched) {
            let rows = rows?;
            if rows.len() < chunk {
                exhausted[i] = true;
            }
            if let Some((k, _)) = rows.last() {
                last[i] = Some(k.clone());
            }
            bufs[i].extend(rows);
        }
        let best = (0..sources)
            .filter_map(|i| bufs[i].front().map(|(k, _)| (i, k)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(item) = best.and_then(|i| bufs[i].pop_front()) else { break };
        if keep(&item.1) {
            out.push(item);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    async fn run(
        data: &[Vec<u32>],
        start: Option<u32>,
        chunk: usize,
        limit: usize,
        calls: &Cell<usize>,
    ) -> Vec<u32> {
        let fetch = |i: usize, after: Option<u32>, n: usize| {
            calls.set(calls.get() + 1);
            let rows: Vec<(u32, u32)> =
                data[i].iter().filter(|&&k| after.is_none_or(|a| k > a)).take(n).map(|&k| (k, k)).collect();
            async move { Ok::<_, ()>(rows) }
        };
        merge_sorted(data.len(), start, chunk, limit, fetch, |v| v % 7 != 0)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[tokio::test]
    async fn merges_in_order_with_paging_and_filter() {
        let data: Vec<Vec<u32>> =
            (0..5).map(|s| (0..200).filter(|k| (k * 31 + 7) % 5 == s).collect()).collect();
        let all: Vec<u32> = (0..200).filter(|v| v % 7 != 0).collect();
        for chunk in [1, 3, 50, 500] {
            // Page through with the last key as the cursor: no gap, no duplicate.
            let mut got: Vec<u32> = Vec::new();
            let mut cursor = None;
            loop {
                let calls = Cell::new(0);
                let page = run(&data, cursor, chunk, 17, &calls).await;
                got.extend(&page);
                if page.len() < 17 {
                    break;
                }
                cursor = page.last().copied();
            }
            assert_eq!(got, all, "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn empty_sources_and_zero_limit() {
        let calls = Cell::new(0);
        assert!(run(&[vec![], vec![]], None, 10, 5, &calls).await.is_empty());
        assert_eq!(calls.get(), 2);
        let calls = Cell::new(0);
        assert!(run(&[vec![1, 2]], None, 10, 0, &calls).await.is_empty());
        assert_eq!(calls.get(), 0);
    }

    #[tokio::test]
    async fn errors_propagate() {
        let fetch = |_: usize, _: Option<u32>, _: usize| async { Err::<Vec<(u32, u32)>, _>("down") };
        assert_eq!(merge_sorted(3, None, 4, 10, fetch, |_| true).await, Err("down"));
    }
}
