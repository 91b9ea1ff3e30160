//! The runbook shipped in the binary: each page's "What to do" is its class's section's,
//! so that a page and the runbook never say different things.

use crate::tunnel_log::CauseKind;
use crate::types::AlertClass;

/// docs/runbook.md, as built.
pub const RUNBOOK: &str = include_str!("../../../../docs/runbook.md");

const WHAT_TO_DO: &str = "**What to do:**";

/// Returns the "What to do" paragraph of the class's section (`## <ClassName>`) as one
/// line, markdown emphasis removed; `None` if the runbook has none.
pub fn what_to_do(class: AlertClass) -> Option<String> {
    what_to_do_in(RUNBOOK, class.name())
}

/// Returns the "What to do" paragraph of a cause's section (`## Cause: DPD`).
pub fn what_to_do_for_cause(kind: CauseKind) -> Option<String> {
    what_to_do_in(RUNBOOK, kind.runbook_heading())
}

fn what_to_do_in(runbook: &str, section: &str) -> Option<String> {
    let heading = format!("## {section}");
    let start = runbook.lines().position(|l| l.trim_end() == heading)?;
    let mut lines = runbook
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.starts_with(WHAT_TO_DO));
    let first = lines.next()?.trim_start_matches(WHAT_TO_DO).trim();
    // The action is the marker's paragraph, or the list that follows a bare marker.
    let rest: Vec<&str> = if first.is_empty() {
        lines
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !l.trim().is_empty())
            .collect()
    } else {
        lines.take_while(|l| !l.trim().is_empty()).collect()
    };
    let paragraph = std::iter::once(first)
        .chain(rest.into_iter().map(str::trim))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some(paragraph.replace("**", "").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Phrases that point at other places in the runbook, which a page does not have.
    const RUNBOOK_RELATIVE: [&str; 8] = [
        "next section",
        "previous section",
        "section below",
        "section above",
        "see below",
        "see above",
        "as above",
        "this section",
    ];

    #[test]
    fn every_class_has_an_action_that_does_not_send_the_noc_to_itself() {
        for class in AlertClass::ALL {
            let action = what_to_do(class).unwrap_or_else(|| panic!("{class}: no What to do"));
            assert!(action.len() > 40, "{class}: {action:?}");
            assert!(
                !action.contains("**") && !action.contains('\n'),
                "{action:?}"
            );
            // The NOC receives the pages.
            assert!(
                !action.to_lowercase().contains("contact the noc"),
                "{class}: {action}"
            );
            // A page stands alone: nothing that only makes sense inside the runbook.
            for phrase in RUNBOOK_RELATIVE {
                assert!(
                    !action.to_lowercase().contains(phrase),
                    "{class}: {phrase:?} in a page: {action}"
                );
            }
        }
    }

    #[test]
    fn every_cause_has_its_section_with_an_action() {
        for kind in CauseKind::ALL {
            let action = what_to_do_for_cause(kind).unwrap_or_else(|| {
                panic!("{kind:?}: no ## {} with What to do", kind.runbook_heading())
            });
            assert!(action.len() > 40, "{kind:?}: {action:?}");
        }
    }

    #[test]
    fn the_paragraph_ends_at_a_blank_line_and_stays_in_its_section() {
        let book = "## A\n\n**Means:** x\n\n**What to do:** first\nsecond **bold**\n\nlater\n## B\n\n**Means:** y\n";
        assert_eq!(
            what_to_do_in(book, "A").as_deref(),
            Some("first second bold")
        );
        assert_eq!(what_to_do_in(book, "B"), None);
        assert_eq!(what_to_do_in(book, "C"), None);
        let listed = "## D\n\n**What to do:**\n\n1. one\n   more\n2. two\n\nafter\n";
        assert_eq!(
            what_to_do_in(listed, "D").as_deref(),
            Some("1. one more 2. two")
        );
    }
}
