//! Detection quality: the violations the server found, matched against the planted ground truth
//! by rule, VIN and start-time window.
use crate::plant::{Expected, GroundTruth};
use serde::Serialize;
use smogwatch::proto::{self, violations_client::ViolationsClient};
use std::collections::{BTreeMap, HashMap, HashSet};
use tonic::transport::Channel;

/// Every violation on the given VINs, via `Violations.List` with paging.
pub async fn fetch_violations(
    channel: Channel,
    vins: &HashSet<String>,
) -> anyhow::Result<Vec<proto::Violation>> {
    let mut client = ViolationsClient::new(channel).max_decoding_message_size(64 << 20);
    let mut out = Vec::new();
    let mut token = String::new();
    // Bounded: 10,000 pages of 1000 is far more than any run here produces.
    for _ in 0..10_000 {
        let page = client
            .list(proto::ListViolationsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        out.extend(page.violations.into_iter().filter(|v| vins.contains(&v.vin)));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
    anyhow::bail!("violation listing did not end after 10,000 pages")
}

#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub rule: String,
    pub vin: String,
    pub started_ms: i64,
    pub late: bool,
    pub summary: String,
}

impl From<&proto::Violation> for Found {
    fn from(v: &proto::Violation) -> Self {
        Found {
            rule: v.rule.clone(),
            vin: v.vin.clone(),
            started_ms: v.started_ms,
            late: v.late,
            summary: v.summary.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleQuality {
    /// Planted and due (the vehicle's data got far enough for the rule to be able to fire).
    pub planted: u32,
    pub found: u32,
    pub missed: u32,
    /// Planted but the run ended before the vehicle's data got far enough.
    pub not_due: u32,
    pub false_alarms: u32,
    /// Found violations whose `late` flag differs from what was planted (reissue vs live).
    pub late_flag_mismatches: u32,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    /// Borderline cases truly on the violation side, and how many of them were found.
    pub borderline_violation: u32,
    pub borderline_violation_found: u32,
    /// Borderline cases truly on the compliant side, and how many were (acceptably) flagged.
    pub borderline_compliant: u32,
    pub borderline_compliant_found: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Quality {
    pub scored_rules: Vec<String>,
    pub by_rule: BTreeMap<String, RuleQuality>,
    pub planted: u32,
    pub found: u32,
    pub not_due: u32,
    pub false_alarms: u32,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    pub misses: Vec<Expected>,
    pub false_alarm_list: Vec<Found>,
}

fn is_zone_rule(rule: &str) -> bool {
    rule == "R1" || rule == "R6.banned_stage"
}

fn ratio(a: u32, b: u32) -> Option<f64> {
    (b > 0).then(|| f64::from(a) / f64::from(b))
}

/// Matches `found` against the truth. `complete_until` gives, per VIN, the time up to which all
/// of its data was delivered (decides which plants were due).
pub fn evaluate(
    truth: &GroundTruth,
    complete_until: &HashMap<String, i64>,
    found: &[proto::Violation],
) -> Quality {
    let mut q = Quality { scored_rules: truth.scored_rules.clone(), ..Default::default() };
    for r in &truth.scored_rules {
        q.by_rule.entry(r.clone()).or_default();
    }
    let mut by_vin: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in truth.expected.iter().enumerate() {
        by_vin.entry(e.vin.as_str()).or_default().push(i);
    }
    let mut matched = vec![false; truth.expected.len()];
    let mut border_found = vec![false; truth.borderline.len()];
    let mut sorted: Vec<&proto::Violation> = found.iter().collect();
    sorted.sort_by(|a, b| (&a.vin, a.started_ms, &a.rule).cmp(&(&b.vin, b.started_ms, &b.rule)));
    for v in sorted {
        let candidates = by_vin.get(v.vin.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let hit = candidates
            .iter()
            .copied()
            .find(|&i| {
                let e = &truth.expected[i];
                !matched[i] && e.rule == v.rule && (e.start_from_ms..=e.start_to_ms).contains(&v.started_ms)
            })
            .or_else(|| {
                // Zone rules: one detector episode may span several true stays (an exit the GNSS
                // error blurred, shorter than min_outside as the terminal saw it). It covers a
                // clear stay when its interval overlaps the stay.
                candidates.iter().copied().find(|&i| {
                    let e = &truth.expected[i];
                    !matched[i]
                        && e.rule == v.rule
                        && is_zone_rule(&e.rule)
                        && v.started_ms <= e.start_to_ms
                        && v.ended_ms.is_none_or(|end| end >= e.start_from_ms)
                })
            });
        match hit {
            Some(i) => {
                matched[i] = true;
                let e = &truth.expected[i];
                let rq = q.by_rule.entry(e.rule.clone()).or_default();
                rq.found += 1;
                rq.planted += 1;
                if e.late != v.late {
                    rq.late_flag_mismatches += 1;
                }
            }
            None => {
                let border = truth.borderline.iter().position(|b| {
                    b.vin == v.vin && b.rule == v.rule && (b.from_ms..=b.to_ms).contains(&v.started_ms)
                });
                match border {
                    Some(b) => {
                        let rq = q.by_rule.entry(v.rule.clone()).or_default();
                        if truth.borderline[b].side == "violation" {
                            rq.borderline_violation_found += 1;
                        } else {
                            rq.borderline_compliant_found += 1;
                        }
                        border_found[b] = true;
                    }
                    None => {
                        q.by_rule.entry(v.rule.clone()).or_default().false_alarms += 1;
                        q.false_alarm_list.push(Found::from(v));
                    }
                }
            }
        }
    }
    for (i, e) in truth.expected.iter().enumerate() {
        if matched[i] {
            continue;
        }
        let rq = q.by_rule.entry(e.rule.clone()).or_default();
        if complete_until.get(&e.vin).is_some_and(|&t| t >= e.due_ms) {
            rq.planted += 1;
            rq.missed += 1;
            q.misses.push(e.clone());
        } else {
            rq.not_due += 1;
        }
    }
    for (b, found) in truth.borderline.iter().zip(&border_found) {
        let rq = q.by_rule.entry(b.rule.clone()).or_default();
        match (b.side == "violation", found) {
            (true, _) => rq.borderline_violation += 1,
            (false, _) => rq.borderline_compliant += 1,
        }
    }
    for rq in q.by_rule.values_mut() {
        rq.recall = ratio(rq.found, rq.planted);
        rq.precision = ratio(rq.found, rq.found + rq.false_alarms);
        q.planted += rq.planted;
        q.found += rq.found;
        q.not_due += rq.not_due;
        q.false_alarms += rq.false_alarms;
    }
    q.recall = ratio(q.found, q.planted);
    q.precision = ratio(q.found, q.found + q.false_alarms);
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plant::PlantFlags;

    fn exp(rule: &str, vin: &str, t: i64, late: bool) -> Expected {
        Expected {
            rule: rule.into(),
            vin: vin.into(),
            start_from_ms: t - 10,
            start_to_ms: t + 10,
            due_ms: t + 100,
            late,
        }
    }

    fn found(rule: &str, vin: &str, t: i64, late: bool) -> proto::Violation {
        proto::Violation { rule: rule.into(), vin: vin.into(), started_ms: t, late, ..Default::default() }
    }

    #[test]
    fn matches_misses_not_due_and_false_alarms() {
        let truth = GroundTruth {
            seed: 1,
            anchor_ms: 0,
            vehicles: 4,
            flags: PlantFlags::default(),
            scored_rules: vec!["R3".into(), "R4.reagent_empty".into()],
            expected: vec![
                exp("R3", "A", 1000, false),
                exp("R3", "B", 1000, true),
                exp("R3", "C", 1000, false),
                exp("R4.reagent_empty", "D", 5000, false),
            ],
            offline_vins: vec![],
            borderline: vec![],
        };
        let complete: HashMap<String, i64> = [("A", 9999), ("B", 9999), ("C", 1050), ("D", 9999)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let got = vec![
            found("R3", "A", 1005, false),
            found("R3", "A", 1006, false), // second violation for one episode
            found("R3", "B", 1000, false), // found live, planted late
            found("R4.reagent_empty", "D", 5000, false),
            found("R4.scr_ineffective", "D", 5000, false), // right vehicle, wrong sub-rule
            found("R5", "E", 7, false),
        ];
        let q = evaluate(&truth, &complete, &got);
        let r3 = &q.by_rule["R3"];
        assert_eq!((r3.planted, r3.found, r3.missed, r3.not_due, r3.false_alarms), (2, 2, 0, 1, 1));
        assert_eq!(r3.late_flag_mismatches, 1);
        assert_eq!(q.by_rule["R4.reagent_empty"].found, 1);
        assert_eq!(q.by_rule["R5"].false_alarms, 1);
        assert_eq!(q.by_rule["R4.scr_ineffective"].false_alarms, 1);
        assert_eq!(q.false_alarms, 3);
        assert_eq!(q.recall, Some(1.0));
        assert!(q.misses.is_empty());
    }

    #[test]
    fn zone_episode_spanning_a_borderline_and_a_clear_stay_matches_the_clear_one() {
        use crate::plant::Borderline;
        let truth = GroundTruth {
            seed: 1,
            anchor_ms: 0,
            vehicles: 1,
            flags: PlantFlags::default(),
            scored_rules: vec!["R1".into()],
            expected: vec![exp("R1", "A", 5000, false)],
            offline_vins: vec![],
            borderline: vec![Borderline {
                rule: "R1".into(),
                vin: "A".into(),
                from_ms: 900,
                to_ms: 1100,
                side: "violation".into(),
                reason: String::new(),
            }],
        };
        let complete: HashMap<String, i64> = [("A".to_string(), 9999)].into_iter().collect();
        // Started in the borderline stay, still open over the clear one.
        let q = evaluate(&truth, &complete, &[found("R1", "A", 1000, false)]);
        assert_eq!((q.by_rule["R1"].found, q.false_alarms), (1, 0));
        // Closed before the clear stay: the clear stay is missed, the violation is borderline.
        let mut closed = found("R1", "A", 1000, false);
        closed.ended_ms = Some(2000);
        let q = evaluate(&truth, &complete, &[closed]);
        let r1 = &q.by_rule["R1"];
        assert_eq!((r1.missed, r1.borderline_violation_found, q.false_alarms), (1, 1, 0));
    }
}
