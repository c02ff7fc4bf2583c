//! The language of what people read: Bahasa Indonesia by default, English when the request
//! prefers it. One parser of `Accept-Language` (RFC 9110 12.5.4, q-values honoured) for the
//! console's pages and the API's error messages alike.

/// The languages the service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// `id` or `en`, as a `?lang=` switch or a cookie names it.
    pub fn parse(text: &str) -> Option<Lang> {
        match text.trim() {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers among those spoken here: the spoken
    /// range with the highest q-value (the earlier one on a tie), matched by its primary
    /// subtag (`en-US` is English). A range with q=0 is refused. No header, no spoken
    /// language, or a header that does not parse: Bahasa Indonesia.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Id;
        };
        let mut best: Option<(u16, Lang)> = None;
        for range in header.split(',') {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let primary = tag.split('-').next().unwrap_or_default();
            let Some(lang) = Lang::parse(primary) else {
                continue;
            };
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .map_or(Some(1000), quality);
            let Some(weight) = weight.filter(|w| *w > 0) else {
                continue;
            };
            if best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::Id, |(_, lang)| lang)
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths; `None` for one that does not parse.
fn quality(text: &str) -> Option<u16> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    fn chosen(header: &str) -> Lang {
        Lang::from_accept_language(Some(header))
    }

    #[test]
    fn indonesian_unless_english_is_preferred() {
        assert_eq!(Lang::from_accept_language(None), Lang::Id);
        assert_eq!(chosen("id"), Lang::Id);
        assert_eq!(chosen("en"), Lang::En);
        assert_eq!(chosen("en-US,en;q=0.9"), Lang::En);
        assert_eq!(chosen("fr"), Lang::Id);
        assert_eq!(chosen("fr-FR, en;q=0.5"), Lang::En);
        assert_eq!(chosen("*"), Lang::Id);
        assert_eq!(chosen(""), Lang::Id);
    }

    #[test]
    fn q_values_decide_not_the_order() {
        assert_eq!(chosen("en;q=0.4, id;q=0.8"), Lang::Id);
        assert_eq!(chosen("id;q=0.3, en-GB;q=0.7"), Lang::En);
        assert_eq!(chosen("id, en"), Lang::Id);
        assert_eq!(chosen("en;q=0, id;q=0.1"), Lang::Id);
        assert_eq!(chosen("en;q=0"), Lang::Id);
        assert_eq!(chosen("en;q=nonsense, id;q=0.2"), Lang::Id);
        assert_eq!(chosen("en; q=1.0"), Lang::En);
    }
}
