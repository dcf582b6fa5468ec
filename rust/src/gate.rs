//! Gate.io APIv4 depth pushes parsed natively: `spot.order_book_update` and
//! `futures.order_book_update` frames into ids, time and `(price, qty)` level vectors that
//! [`crate::OrderBook::apply_update`] takes as they are (no Python objects per level).
//!
//! Frame shapes (Gate API v4 docs, "Spot WebSocket v4" > "Changed order book levels" and
//! "Futures WebSocket v4" > "Order book update"; `shared/venues/PROTOCOLS.md` §2.4, §2.5, §3.4):
//!
//! ```text
//! {"time":..,"time_ms":..,"channel":"spot.order_book_update","event":"update",
//!  "result":{"t":<ms>,"full"?:<bool>,"l"?:<levels>,"e":..,"E":..,"s":"BTC_USDT","U":<first>,"u":<last>,
//!            "b":[["<price>","<amount>"],..],"a":[..]}}
//! {"time":..,"time_ms":..,"channel":"futures.order_book_update","event":"update",
//!  "result":{"t":<ms>,"s":"BTC_USDT","U":<first>,"u":<last>,
//!            "b":[{"p":"<price>","s":<size>},..],"a":[..]}}
//! ```
//!
//! Levels are absolute; amount/size 0 deletes the level (§2.5 rule 5). Prices and amounts come
//! as decimal strings, futures sizes as JSON integers (or decimal strings with
//! `X-Gate-Size-Decimal`).
//!
//! This parser is the fast path of the Python codec (`cexarb.venues.gateio.codec`, msgspec,
//! `strict=False`). It accepts a **subset** of what that codec accepts and yields exactly the
//! same values for it: JSON numbers and numeric strings in plain JSON number syntax, all
//! non-negative; ids and times as non-negative integers (or digit strings); `full` as a JSON bool.
//! Anything else -- another channel, an `error` object, a missing field, a negative number,
//! `"nan"`, a float id, a duplicate key, malformed JSON -- is *not taken*
//! ([`NotTaken`]), and the caller hands the frame to the general codec, which decodes it or
//! raises its error naming the JSON path. So a frame never decodes to different values here
//! than there, and errors keep one source.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem::Finder;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Which Gate market a depth push belongs to (the frame's `channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateMarket {
    /// `spot.order_book_update`: levels `["price", "amount"]`, amounts in base units.
    Spot,
    /// `futures.order_book_update`: levels `{"p": "price", "s": size}`, sizes in contracts.
    Futures,
}

impl GateMarket {
    /// The WebSocket channel name of this market's depth pushes.
    pub fn channel(self) -> &'static str {
        match self {
            GateMarket::Spot => "spot.order_book_update",
            GateMarket::Futures => "futures.order_book_update",
        }
    }
}

/// One decoded depth push.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDepthUpdate {
    pub market: GateMarket,
    /// `s`: the currency pair / contract, e.g. `BTC_USDT`.
    pub symbol: String,
    /// `t`: the push's event time, epoch milliseconds.
    pub ts_ms: u64,
    /// `U`: first update id in the push.
    pub first_id: u64,
    /// `u`: last update id in the push.
    pub last_id: u64,
    /// `b`: `(price, qty)` absolute, quote currency per base unit / base units or contracts; 0 deletes.
    pub bids: Vec<(f64, f64)>,
    /// `a`: as `bids`.
    pub asks: Vec<(f64, f64)>,
    /// `full`: true when the push replaces the whole book (§2.5 rule 6); false when absent.
    pub full: bool,
    /// `l`: the subscribed level count; 0 when absent.
    pub depth: u64,
}

/// Why [`parse_depth_update`] did not take a frame; the caller decodes it the general way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    /// No `"channel":"<market>.order_book_update","event":"update"` near the start: another
    /// kind of frame (acks, tickers, trades, orders, `*.obu`, ...).
    NotDepth,
    /// Looks like a depth push but this parser does not take it (the reason, for tests and
    /// logs; the general codec gives the user-facing error, if any).
    Unsupported(String),
}

impl fmt::Display for NotTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotTaken::NotDepth => f.write_str("not a Gate order_book_update push"),
            NotTaken::Unsupported(reason) => write!(f, "Gate depth push not taken: {reason}"),
        }
    }
}

impl std::error::Error for NotTaken {}

const SPOT_TAG: &[u8] = b"\"channel\":\"spot.order_book_update\",\"event\":\"update\"";
const FUTURES_TAG: &[u8] = b"\"channel\":\"futures.order_book_update\",\"event\":\"update\"";
/// The tag is searched in the first 160 bytes only (Gate puts `time`/`time_ms` before it), as
/// the Python codec does.
const TAG_WINDOW: usize = 160;
/// The tag searchers, built once (building one costs more than a search).
static SPOT_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SPOT_TAG));
static FUTURES_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(FUTURES_TAG));

/// Parses a `spot.order_book_update` / `futures.order_book_update` push (see the module docs).
///
/// Errors: [`NotTaken::NotDepth`] for any other frame, [`NotTaken::Unsupported`] for a depth
/// push outside this parser's subset (the general codec then decodes it or names the problem).
pub fn parse_depth_update(frame: &[u8]) -> Result<GateDepthUpdate, NotTaken> {
    let head = &frame[..frame.len().min(TAG_WINDOW)];
    let market = if SPOT_FINDER.find(head).is_some() {
        GateMarket::Spot
    } else if FUTURES_FINDER.find(head).is_some() {
        GateMarket::Futures
    } else {
        return Err(NotTaken::NotDepth);
    };
    match market {
        GateMarket::Spot => depth_update::<SpotLevel>(market, frame),
        GateMarket::Futures => depth_update::<MapOnly<FuturesLevel>>(market, frame),
    }
}

/// One market's depth push, its levels read as `L`.
fn depth_update<L>(market: GateMarket, frame: &[u8]) -> Result<GateDepthUpdate, NotTaken>
where
    L: Level + for<'de> Deserialize<'de>,
{
    let MapOnly(frame): MapOnly<Frame<'_, MapOnly<DepthResult<'_, L>>>> =
        serde_json::from_slice(frame).map_err(|e| NotTaken::Unsupported(e.to_string()))?;
    frame.check(market)?;
    let r = frame.result.0;
    Ok(GateDepthUpdate {
        market,
        symbol: r.s.into_owned(),
        ts_ms: r.t.0,
        first_id: r.first.0,
        last_id: r.last.0,
        bids: r.b.0,
        asks: r.a.0,
        full: r.full,
        depth: r.l.0,
    })
}

// ---- serde views ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct Frame<'a, R> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    result: R,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

impl<R> Frame<'_, R> {
    fn check(&self, market: GateMarket) -> Result<(), NotTaken> {
        if self.channel != market.channel() || self.event != "update" {
            return Err(NotTaken::Unsupported(format!(
                "channel {:?} event {:?}",
                self.channel, self.event
            )));
        }
        if self.error.is_some() {
            return Err(NotTaken::Unsupported("an 'error' object".to_owned()));
        }
        Ok(())
    }
}

/// `result` of a depth update; `L` is the market's level shape (spot `["p","s"]`, futures
/// `{"p":..,"s":..}`), both read into `(price, qty)` pairs.
#[derive(Deserialize)]
#[serde(bound(deserialize = "L: Level + Deserialize<'de>"))]
struct DepthResult<'a, L> {
    t: Uint,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    l: Uint,
    #[serde(borrow)]
    s: Cow<'a, str>,
    #[serde(rename = "U")]
    first: Uint,
    #[serde(rename = "u")]
    last: Uint,
    #[serde(default)]
    b: Levels<L>,
    #[serde(default)]
    a: Levels<L>,
}

/// A non-negative integer: a JSON integer or a string of digits (no sign, no leading zero).
#[derive(Default)]
struct Uint(u64);

impl<'de> Deserialize<'de> for Uint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Uint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or a string of digits")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Uint, E> {
                Ok(Uint(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Uint, E> {
                let digits = v.as_bytes();
                let plain = !digits.is_empty()
                    && digits.iter().all(u8::is_ascii_digit)
                    && (digits.len() == 1 || digits[0] != b'0');
                if !plain {
                    return Err(E::custom(format_args!("not a plain integer string: {:?}", short(v))));
                }
                v.parse::<u64>().map(Uint).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A finite non-negative float: a JSON number or a string in JSON number syntax without a sign.
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number or decimal string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                if v.is_finite() && v.is_sign_positive() {
                    Ok(Num(v))
                } else {
                    Err(E::custom(format_args!("negative or non-finite number {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                parse_decimal(v)
                    .map(Num)
                    .ok_or_else(|| E::custom(format_args!("not a plain decimal string: {:?}", short(v))))
            }
        }
        d.deserialize_any(V)
    }
}

/// `v` when it is an unsigned JSON number (`0|[1-9][0-9]*`, optional `.[0-9]+`, optional
/// `[eE][+-]?[0-9]+`), parsed to the nearest `f64` and finite; None otherwise.
fn parse_decimal(v: &str) -> Option<f64> {
    let b = v.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_digits = digits(&mut i);
    if int_digits == 0 || (int_digits > 1 && b[0] == b'0') {
        return None;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    let value = v.parse::<f64>().ok()?;
    value.is_finite().then_some(value)
}

fn short(v: &str) -> &str {
    match v.char_indices().nth(32) {
        Some((end, _)) => &v[..end],
        None => v,
    }
}

/// A level list collected straight into `(price, qty)` pairs.
struct Levels<L>(Vec<(f64, f64)>, std::marker::PhantomData<L>);

impl<L> Default for Levels<L> {
    fn default() -> Self {
        Levels(Vec::new(), std::marker::PhantomData)
    }
}

trait Level {
    fn pair(self) -> (f64, f64);
}

/// `["price", "amount"]` (exactly two elements).
#[derive(Deserialize)]
struct SpotLevel(Num, Num);

impl Level for SpotLevel {
    fn pair(self) -> (f64, f64) {
        (self.0 .0, self.1 .0)
    }
}

/// `{"p": "price", "s": size}` (other keys ignored).
#[derive(Deserialize)]
struct FuturesLevel {
    p: Num,
    s: Num,
}

impl Level for MapOnly<FuturesLevel> {
    fn pair(self) -> (f64, f64) {
        (self.0.p.0, self.0.s.0)
    }
}

/// A struct read from a JSON object only (serde's derived structs also take a JSON array of
/// the field values, which the Python codec rejects).
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MapOnly<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'de, L: Level + Deserialize<'de>> Deserialize<'de> for Levels<L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<L>(std::marker::PhantomData<L>);
        impl<'de, L: Level + Deserialize<'de>> Visitor<'de> for V<L> {
            type Value = Levels<L>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of levels")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Levels<L>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).max(16));
                while let Some(level) = seq.next_element::<L>()? {
                    out.push(level.pair());
                }
                Ok(Levels(out, std::marker::PhantomData))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

// ---- outgoing: the spot order body -----------------------------------------------------------

/// The compact JSON body of a Gate spot limit order, ``POST /spot/orders`` (Gate API v4 docs,
/// "Spot" > "Create an order"; `shared/venues/PROTOCOLS.md` §2.2):
/// `{"currency_pair":..,"side":..,"amount":..,"price":..[,"time_in_force":..],"text":"t-<id>"}`
/// -- the same bytes as the Python codec's `GateSpotOrderBody` encodes for it (defaults
/// omitted: type `limit`, account `spot`, time in force `gtc`).
///
/// `side` `buy` / `sell`; `amount` base units and `price` quote currency, as exact decimal
/// strings; `time_in_force` our `gtc` / `ioc` / `post_only` (Gate `gtc` / `ioc` / `poc`);
/// `client_order_id` sent as `text` = `"t-" + id`, which Gate limits to 28 characters of
/// `[0-9A-Za-z_.-]` after the prefix (docs, field `text`).
///
/// None when a field needs JSON escaping or a check (a symbol outside `[0-9A-Za-z_]{1,64}`, an
/// amount or price that is not `[0-9.]+`, an unknown side or time in force, a client order id
/// Gate does not take): the codec's general path then builds the body or raises its error.
pub fn spot_limit_order_body(
    symbol: &str,
    side: &str,
    amount: &str,
    price: &str,
    time_in_force: &str,
    client_order_id: &str,
) -> Option<Vec<u8>> {
    let plain_symbol = (1..=64).contains(&symbol.len())
        && symbol.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let decimal = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let text_ok = (1..=28).contains(&client_order_id.len())
        && client_order_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if !(plain_symbol && decimal(amount) && decimal(price) && text_ok) {
        return None;
    }
    let side = match side {
        "buy" => "buy",
        "sell" => "sell",
        _ => return None,
    };
    let tif = match time_in_force {
        "gtc" => "",
        "ioc" => r#","time_in_force":"ioc""#,
        "post_only" => r#","time_in_force":"poc""#,
        _ => return None,
    };
    let mut out = Vec::with_capacity(96 + symbol.len() + amount.len() + price.len() + client_order_id.len());
    for part in [
        r#"{"currency_pair":""#,
        symbol,
        r#"","side":""#,
        side,
        r#"","amount":""#,
        amount,
        r#"","price":""#,
        price,
        "\"",
        tif,
        r#","text":"t-"#,
        client_order_id,
        "\"}",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT: &str = r#"{"time":1619093532,"channel":"spot.order_book_update","event":"update","result":{"t":1619093532978,"e":"depthUpdate","E":1619093532,"s":"HAI_ETH","U":2691446,"u":2691447,"b":[["0.00010322","5360.209"],["0.00010276","0"]],"a":[["0.0001041","1e3"]]}}"#;
    const FUTURES: &str = r#"{"time":1684930165,"time_ms":1684930165353,"channel":"futures.order_book_update","event":"update","result":{"U":203083178,"a":[{"p":"0.3047","s":8393},{"p":"0.2992","s":"1.5"}],"b":[],"s":"RDNT_USDT","t":1684930165247,"u":203083178,"l":"100"}}"#;

    #[test]
    fn spot_push() {
        let u = parse_depth_update(SPOT.as_bytes()).unwrap();
        assert_eq!(u.market, GateMarket::Spot);
        assert_eq!((u.symbol.as_str(), u.ts_ms, u.first_id, u.last_id), ("HAI_ETH", 1619093532978, 2691446, 2691447));
        assert_eq!(u.bids, vec![(0.00010322, 5360.209), (0.00010276, 0.0)]);
        assert_eq!(u.asks, vec![(0.0001041, 1000.0)]);
        assert!(!u.full);
        assert_eq!(u.depth, 0);
    }

    #[test]
    fn futures_push_with_int_and_string_sizes() {
        let u = parse_depth_update(FUTURES.as_bytes()).unwrap();
        assert_eq!(u.market, GateMarket::Futures);
        assert_eq!(u.market.channel(), "futures.order_book_update");
        assert_eq!((u.symbol.as_str(), u.first_id, u.last_id, u.depth), ("RDNT_USDT", 203083178, 203083178, 100));
        assert_eq!(u.asks, vec![(0.3047, 8393.0), (0.2992, 1.5)]);
        assert!(u.bids.is_empty());
    }

    #[test]
    fn full_push_and_missing_sides() {
        let f = r#"{"channel":"spot.order_book_update","event":"update","result":{"t":1,"full":true,"l":"100","s":"BTC_USDT","U":5,"u":9}}"#;
        let u = parse_depth_update(f.as_bytes()).unwrap();
        assert!(u.full && u.bids.is_empty() && u.asks.is_empty());
        assert_eq!(u.depth, 100);
    }

    #[test]
    fn other_frames_are_not_depth() {
        for f in [
            r#"{"time":1,"channel":"spot.book_ticker","event":"update","result":{}}"#,
            r#"{"time":1,"channel":"spot.order_book_update","event":"subscribe","result":{"status":"success"}}"#,
            r#"{"time":1,"channel":"spot.obu","event":"update","result":{}}"#,
            "",
            "not json",
        ] {
            assert_eq!(parse_depth_update(f.as_bytes()), Err(NotTaken::NotDepth), "{f}");
        }
    }

    #[test]
    fn outside_the_subset_is_not_taken() {
        let base = SPOT.to_owned();
        let cases = [
            base.replace("\"0.00010322\"", "\"nan\""),
            base.replace("\"0.00010322\"", "\"-0.1\""),
            base.replace("\"0.00010322\"", "\"00.1\""),
            base.replace("\"0.00010322\"", "\".1\""),
            base.replace("\"0.00010322\"", "\"1e400\""),
            base.replace("\"0.00010322\"", "-0.0"),
            base.replace(",\"5360.209\"]", ",\"5360.209\",\"1\"]"),
            base.replace(",\"5360.209\"]", "]"),
            base.replace("\"U\":2691446", "\"U\":-1"),
            base.replace("\"U\":2691446", "\"U\":2691446.0"),
            base.replace("\"U\":2691446", "\"U\":\"02691446\""),
            base.replace("\"U\":2691446,", ""),
            base.replace("\"s\":\"HAI_ETH\"", "\"s\":1"),
            base.replace("\"result\":{", "\"error\":{\"code\":1},\"result\":{"),
            base.replace("\"s\":\"HAI_ETH\"", "\"s\":\"HAI_ETH\",\"s\":\"X\""),
            base.replace("\"result\":{", "\"result\":[{").replace("}}", "}]}"),
            r#"{"channel":"spot.order_book_update","event":"update","result":[1,false,0,"BTC_USDT",1,2,[],[]]}"#.to_owned(),
            FUTURES.replace(r#"{"p":"0.3047","s":8393}"#, r#"["0.3047",8393]"#),
            base[..base.len() - 1].to_owned(),
            format!("{base}x"),
        ];
        for case in cases {
            match parse_depth_update(case.as_bytes()) {
                Err(NotTaken::Unsupported(_)) => {}
                other => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_null_is_no_error_and_escapes_decode() {
        let f = SPOT.replace("\"result\":{", "\"error\":null,\"result\":{").replace("HAI_ETH", "HAI\\u005fETH");
        let u = parse_depth_update(f.as_bytes()).unwrap();
        assert_eq!(u.symbol, "HAI_ETH");
    }

    #[test]
    fn decimal_grammar() {
        for (text, value) in [("0", 0.0), ("1", 1.0), ("0.5", 0.5), ("1e5", 1e5), ("1E+2", 100.0), ("2.5e-3", 0.0025)] {
            assert_eq!(parse_decimal(text), Some(value), "{text}");
        }
        for text in ["", "-1", "+1", "01", "1.", ".5", "1e", "1e+", " 1", "1 ", "inf", "nan", "0x1", "1_0"] {
            assert_eq!(parse_decimal(text), None, "{text}");
        }
    }

    #[test]
    fn spot_limit_body_bytes() {
        let body = spot_limit_order_body("BTC_USDT", "buy", "0.001500", "65000.1", "post_only", "abc").unwrap();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"currency_pair":"BTC_USDT","side":"buy","amount":"0.001500","price":"65000.1","time_in_force":"poc","text":"t-abc"}"#
        );
        let gtc = spot_limit_order_body("A_B", "sell", "1", "2.5", "gtc", "x-1.y_z").unwrap();
        assert_eq!(
            std::str::from_utf8(&gtc).unwrap(),
            r#"{"currency_pair":"A_B","side":"sell","amount":"1","price":"2.5","text":"t-x-1.y_z"}"#
        );
        for (sym, side, amount, price, tif, cid) in [
            ("BTC\"USDT", "buy", "1", "1", "gtc", "a"),
            ("", "buy", "1", "1", "gtc", "a"),
            ("A_B", "hold", "1", "1", "gtc", "a"),
            ("A_B", "buy", "", "1", "gtc", "a"),
            ("A_B", "buy", "1", "-1", "gtc", "a"),
            ("A_B", "buy", "1", "1e5", "gtc", "a"),
            ("A_B", "buy", "1", "1", "fok", "a"),
            ("A_B", "buy", "1", "1", "gtc", ""),
            ("A_B", "buy", "1", "1", "gtc", "has space"),
            ("A_B", "buy", "1", "1", "gtc", "x123456789012345678901234567890"),
        ] {
            assert_eq!(spot_limit_order_body(sym, side, amount, price, tif, cid), None, "{sym} {side} {price} {cid}");
        }
    }
}
