use super::*;

const APPROVE_PAN: &str = "4000000000000002";

fn host() -> Host {
    Host::new(Duration::from_millis(1234), 0)
}

fn request(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(mti.parse().unwrap());
    for (field, value) in fields {
        message.set(*field, value.as_bytes());
    }
    message
}

fn purchase(mti: &str, pan: &str, stan: &str) -> Message {
    request(
        mti,
        &[
            (2, pan),
            (3, "000000"),
            (4, "000000001000"),
            (11, stan),
            (41, "TERM0001"),
            (49, "978"),
        ],
    )
}

fn sent(reply: Reply) -> Message {
    match reply {
        Reply::Send(message) => message,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn code_of(reply: Reply) -> String {
    sent(reply).get_text(39).unwrap().to_string()
}

#[test]
fn network_management_answers_sign_on_sign_off_and_echo() {
    let host = host();
    for code in ["001", "002", "301"] {
        let answer = sent(host.handle(&request("0800", &[(11, "000001"), (70, code)])));
        assert_eq!(answer.mti().as_str(), "0810");
        assert_eq!(answer.get_text(39), Some("00"));
        assert_eq!(answer.get_text(70), Some(code));
        assert_eq!(answer.get_text(11), Some("000001"));
    }
    assert_eq!(code_of(host.handle(&request("0800", &[(70, "999")]))), "12");
    assert_eq!(
        code_of(host.handle(&request("0800", &[(11, "000001")]))),
        "30"
    );
}

#[test]
fn test_cards_decide_the_answer() {
    let host = host();
    let cases = [
        (APPROVE_PAN, "00"),
        ("4000000000000005", "05"),
        ("4000000000000051", "51"),
        ("4000000000000091", "91"),
        ("4000000000000096", "96"),
        ("40000000", "14"),
    ];
    for (i, (pan, expected)) in cases.into_iter().enumerate() {
        let answer = sent(host.handle(&purchase("0200", pan, &format!("{i:06}"))));
        assert_eq!(answer.mti().as_str(), "0210");
        assert_eq!(answer.get_text(39), Some(expected), "{pan}");
        assert_eq!(
            answer.has(38),
            expected == "00",
            "auth code only on approval"
        );
        assert!(!answer.has(2), "the PAN is not echoed");
    }
}

#[test]
fn an_approval_echoes_the_request_and_carries_rrn_and_auth_code() {
    let answer = sent(host().handle(&purchase("0100", APPROVE_PAN, "000042")));
    assert_eq!(answer.mti().as_str(), "0110");
    for (field, value) in [
        (3, "000000"),
        (4, "000000001000"),
        (11, "000042"),
        (41, "TERM0001"),
    ] {
        assert_eq!(answer.get_text(field), Some(value), "field {field}");
    }
    assert_eq!(answer.get_text(37).map(str::len), Some(12));
    assert_eq!(answer.get_text(38).map(str::len), Some(6));
}

#[test]
fn slow_and_dropping_cards() {
    let host = host();
    match host.handle(&purchase("0200", "4000000000000077", "000001")) {
        Reply::SendAfter { delay, message } => {
            assert_eq!(delay, Duration::from_millis(1234));
            assert_eq!(message.get_text(39), Some("00"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        host.handle(&purchase("0200", "4000000000000099", "000002")),
        Reply::Drop
    );
}

#[test]
fn bad_requests_get_format_and_amount_codes() {
    let host = host();
    let mut no_terminal = purchase("0200", APPROVE_PAN, "000001");
    no_terminal.remove(41);
    assert_eq!(code_of(host.handle(&no_terminal)), "30");
    let mut bad_amount = purchase("0200", APPROVE_PAN, "000002");
    bad_amount.set(4, "00000000100x");
    assert_eq!(code_of(host.handle(&bad_amount)), "13");
    assert_eq!(
        code_of(host.handle(&request("0600", &[(11, "000003")]))),
        "12"
    );
    assert_eq!(host.handle(&request("0210", &[(39, "00")])), Reply::Ignore);
}

#[test]
fn reversals_match_the_original_by_field_90_stan_or_rrn_and_repeat_idempotently() {
    let host = host();
    let approved = sent(host.handle(&purchase("0200", APPROVE_PAN, "000100")));
    let rrn = approved.get_text(37).unwrap().to_string();
    sent(host.handle(&purchase("0200", APPROVE_PAN, "000101")));
    sent(host.handle(&purchase("0200", APPROVE_PAN, "000102")));

    // Original MTI, STAN, transmission time, then acquirer and forwarder ids (zeros).
    let original_data = format!("0200{}{}{}", "000100", "1205143015", "0".repeat(22));
    let by_90 = request(
        "0420",
        &[(11, "000200"), (41, "TERM0001"), (90, &original_data)],
    );
    let answer = sent(host.handle(&by_90));
    assert_eq!(
        (answer.mti().as_str(), answer.get_text(39)),
        ("0430", Some("00"))
    );
    let repeat = request(
        "0421",
        &[(11, "000200"), (41, "TERM0001"), (90, &original_data)],
    );
    assert_eq!(
        code_of(host.handle(&repeat)),
        "00",
        "a repeat gets the same answer"
    );
    let by_stan = request("0400", &[(11, "000101"), (41, "TERM0001")]);
    assert_eq!(code_of(host.handle(&by_stan)), "00");
    let by_rrn = request("0400", &[(11, "000300"), (37, &rrn), (41, "TERM9999")]);
    assert_eq!(code_of(host.handle(&by_rrn)), "00");
    let unknown = request("0420", &[(11, "000999"), (41, "TERM0001")]);
    assert_eq!(code_of(host.handle(&unknown)), "25");
    let declined = sent(host.handle(&purchase("0200", "4000000000000051", "000400")));
    assert_eq!(declined.get_text(39), Some("51"));
    let reversal_of_declined = request("0400", &[(11, "000400"), (41, "TERM0001")]);
    assert_eq!(
        code_of(host.handle(&reversal_of_declined)),
        "25",
        "declines are not kept"
    );
}

#[test]
fn completions_need_an_open_authorization_and_at_most_its_amount() {
    let host = host();
    sent(host.handle(&purchase("0100", APPROVE_PAN, "000001")));
    let mut completion = request(
        "0220",
        &[(4, "000000001001"), (11, "000001"), (41, "TERM0001")],
    );
    assert_eq!(
        code_of(host.handle(&completion)),
        "13",
        "more than authorized"
    );
    completion.set(4, "000000000800");
    let answer = sent(host.handle(&completion));
    assert_eq!(
        (answer.mti().as_str(), answer.get_text(39)),
        ("0230", Some("00"))
    );
    completion.set_mti("0221".parse().unwrap());
    assert_eq!(
        code_of(host.handle(&completion)),
        "00",
        "a repeat gets the same answer"
    );

    sent(host.handle(&purchase("0200", APPROVE_PAN, "000002")));
    let of_purchase = request(
        "0220",
        &[(4, "000000000800"), (11, "000002"), (41, "TERM0001")],
    );
    assert_eq!(
        code_of(host.handle(&of_purchase)),
        "25",
        "a purchase is not completed"
    );
    sent(host.handle(&purchase("0100", APPROVE_PAN, "000003")));
    sent(host.handle(&request("0400", &[(11, "000003"), (41, "TERM0001")])));
    let of_reversed = request(
        "0220",
        &[(4, "000000000800"), (11, "000003"), (41, "TERM0001")],
    );
    assert_eq!(
        code_of(host.handle(&of_reversed)),
        "25",
        "a reversed one is not completed"
    );
    let unknown = request(
        "0220",
        &[(4, "000000000800"), (11, "000999"), (41, "TERM0001")],
    );
    assert_eq!(code_of(host.handle(&unknown)), "25");
}

fn original_data(stan: &str) -> String {
    format!("0200{stan}{}", "0".repeat(32))
}

#[test]
fn refunds_name_their_purchase_in_field_90_and_need_no_card() {
    let host = host();
    assert_eq!(
        code_of(host.handle(&purchase("0200", APPROVE_PAN, "000001"))),
        "00"
    );
    let refund = |stan: &str, amount: &str, original: &str| {
        request(
            "0200",
            &[
                (3, "200000"),
                (4, amount),
                (11, stan),
                (41, "TERM0001"),
                (90, &original_data(original)),
            ],
        )
    };
    assert_eq!(
        code_of(host.handle(&refund("000002", "000000000600", "000001"))),
        "00"
    );
    assert_eq!(
        code_of(host.handle(&refund("000003", "000000000500", "000001"))),
        "13",
        "only 400 of 1000 are left"
    );
    assert_eq!(
        code_of(host.handle(&refund("000004", "000000000400", "000001"))),
        "00"
    );
    assert_eq!(
        code_of(host.handle(&refund("000005", "000000000001", "999999"))),
        "25"
    );
}

#[test]
fn the_first_advices_go_unanswered_when_asked() {
    let host = Host::new(Duration::from_millis(1), 2);
    assert_eq!(
        code_of(host.handle(&purchase("0200", APPROVE_PAN, "000001"))),
        "00"
    );
    let advice = |mti: &str, stan: &str| {
        request(
            mti,
            &[
                (3, "000000"),
                (4, "000000001000"),
                (11, stan),
                (41, "TERM0001"),
                (90, &original_data("000001")),
            ],
        )
    };
    assert_eq!(host.handle(&advice("0420", "000002")), Reply::Ignore);
    assert_eq!(host.handle(&advice("0421", "000003")), Reply::Ignore);
    assert_eq!(code_of(host.handle(&advice("0421", "000004"))), "00");
    let mtis: Vec<String> = host.received().into_iter().map(|(mti, _)| mti).collect();
    assert_eq!(mtis, ["0200", "0420", "0421", "0421"]);
}

#[test]
fn the_settlement_file_lists_settled_transactions_only() {
    let host = host();
    let today = settlement::today();
    sent(host.handle(&purchase("0200", APPROVE_PAN, "000001")));
    sent(host.handle(&purchase("0200", "4000000000000051", "000002")));
    sent(host.handle(&purchase("0100", APPROVE_PAN, "000003")));
    sent(host.handle(&purchase("0100", APPROVE_PAN, "000004")));
    let completion = request(
        "0220",
        &[(4, "000000000700"), (11, "000004"), (41, "TERM0001")],
    );
    assert_eq!(code_of(host.handle(&completion)), "00");
    let refund = |stan: &str| {
        request(
            "0200",
            &[
                (3, "200000"),
                (4, "000000001000"),
                (11, stan),
                (41, "TERM0001"),
                (90, &original_data("000001")),
            ],
        )
    };
    assert_eq!(code_of(host.handle(&refund("000005"))), "00");
    // The refund is reversed: gone from the file, and its purchase refundable again.
    let reversal = request(
        "0420",
        &[
            (11, "000006"),
            (41, "TERM0001"),
            (90, &original_data("000005")),
        ],
    );
    assert_eq!(code_of(host.handle(&reversal)), "00");
    assert_eq!(code_of(host.handle(&refund("000007"))), "00");
    let file = host.settlement_file(&today);
    let rows: Vec<(String, String, String, String)> = file
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            (
                cells[1].into(),
                cells[3].into(),
                cells[6].into(),
                cells[8].into(),
            )
        })
        .collect();
    let row = |mti: &str, stan: &str, amount: &str, code: &str| {
        (
            mti.to_string(),
            stan.to_string(),
            amount.to_string(),
            code.to_string(),
        )
    };
    assert_eq!(
        rows,
        [
            row("0200", "000001", "1000", "000000"),
            row("0100", "000004", "700", "000000"),
            row("0200", "000007", "1000", "200000"),
        ],
        "not the decline, the open authorization or the reversed refund:\n{file}"
    );
    assert!(file.starts_with(settlement::HEADER));
    assert!(!file.contains(APPROVE_PAN));
    assert_eq!(
        host.settlement_file("2000-01-01"),
        format!("{}\n", settlement::HEADER)
    );
}
