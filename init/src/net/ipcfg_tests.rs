use super::*;
use std::net::Ipv6Addr;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}
fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

#[test]
fn keyword_forms() {
    let cases = [
        ("dhcp", Autoconf::Dhcp),
        ("on", Autoconf::Any),
        ("any", Autoconf::Any),
        ("off", Autoconf::Off),
        ("none", Autoconf::Off),
        ("dhcp6", Autoconf::Dhcp6),
        ("auto6", Autoconf::Auto6),
        ("", Autoconf::Any),
    ];
    for (value, want) in cases {
        let p = parse_ip(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(p, IpParam::auto(want), "{value}");
    }
}

#[test]
fn device_forms() {
    let p = parse_ip("eth0:dhcp").unwrap();
    assert_eq!(p.device.as_deref(), Some("eth0"));
    assert_eq!(p.autoconf, Autoconf::Dhcp);
    assert_eq!(p.client, None);

    let p = parse_ip("enp0s3:dhcp6:9000").unwrap();
    assert_eq!(p.device.as_deref(), Some("enp0s3"));
    assert_eq!(p.autoconf, Autoconf::Dhcp6);
    assert_eq!(p.mtu, Some(9000));

    // The kernel form with only <device> and <autoconf> set.
    let p = parse_ip(":::::eth1:dhcp").unwrap();
    assert_eq!(p.device.as_deref(), Some("eth1"));
    assert_eq!(p.autoconf, Autoconf::Dhcp);
}

#[test]
fn full_kernel_form() {
    let p = parse_ip(
        "10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:node1.example.com:eth0:off:10.0.0.53:1.1.1.1:10.0.0.123",
    )
    .unwrap();
    assert_eq!(
        p,
        IpParam {
            client: Some(v4("10.0.0.5")),
            server: Some(v4("10.0.0.1")),
            gateway: Some(v4("10.0.0.254")),
            prefix: Some(24),
            hostname: Some("node1.example.com".into()),
            device: Some("eth0".into()),
            autoconf: Autoconf::Off,
            dns: vec![v4("10.0.0.53"), v4("1.1.1.1")],
            ntp: Some(v4("10.0.0.123")),
            mtu: None,
        }
    );
}

#[test]
fn partial_and_defaults() {
    // Client only: static, classful default prefix.
    let p = parse_ip("10.1.2.3").unwrap();
    assert_eq!(p.client, Some(v4("10.1.2.3")));
    assert_eq!(p.autoconf, Autoconf::Off);
    assert_eq!(p.prefix, None);
    assert_eq!(p.prefix_or_default(), Some(8));
    assert_eq!(
        parse_ip("172.16.0.9").unwrap().prefix_or_default(),
        Some(16)
    );
    assert_eq!(
        parse_ip("192.168.1.9").unwrap().prefix_or_default(),
        Some(24)
    );

    // Prefix length instead of a netmask; empty device; no autoconf.
    let p = parse_ip("192.168.1.10::192.168.1.1:24:cp1::").unwrap();
    assert_eq!(p.prefix, Some(24));
    assert_eq!(p.gateway, Some(v4("192.168.1.1")));
    assert_eq!(p.hostname.as_deref(), Some("cp1"));
    assert_eq!(p.device, None);
    assert_eq!(p.autoconf, Autoconf::Off);

    // Only a hostname, autoconf left to default: any.
    let p = parse_ip("::::cp2::").unwrap();
    assert_eq!(p.client, None);
    assert_eq!(p.hostname.as_deref(), Some("cp2"));
    assert_eq!(p.autoconf, Autoconf::Any);

    // Static address but still asking for DHCP (kernel allows both).
    let p = parse_ip("10.0.0.5::10.0.0.1:255.255.0.0::eth0:dhcp").unwrap();
    assert_eq!((p.prefix, p.autoconf), (Some(16), Autoconf::Dhcp));

    // Netmask 0.0.0.0 and /32 are contiguous.
    assert_eq!(parse_ip("10.0.0.5:::0.0.0.0").unwrap().prefix, Some(0));
    assert_eq!(
        parse_ip("10.0.0.5:::255.255.255.255").unwrap().prefix,
        Some(32)
    );
}

#[test]
fn ipv6_in_brackets() {
    let p = parse_ip("[2001:db8::2]::[2001:db8::1]:64:cp3:eth0:none:[2001:db8::53]").unwrap();
    assert_eq!(p.client, Some(v6("2001:db8::2")));
    assert_eq!(p.gateway, Some(v6("2001:db8::1")));
    assert_eq!(p.prefix, Some(64));
    assert_eq!(p.device.as_deref(), Some("eth0"));
    assert_eq!(p.autoconf, Autoconf::Off);
    assert_eq!(p.dns, vec![v6("2001:db8::53")]);
    assert_eq!(parse_ip("[fd00::5]").unwrap().prefix_or_default(), Some(64));
    assert_eq!(parse_ip("[fd00::5]:::128").unwrap().prefix, Some(128));
}

#[test]
fn malformed_name_the_field() {
    let cases: &[(&str, IpField)] = &[
        ("dhcpp", IpField::Autoconf),
        ("bootp", IpField::Autoconf),
        ("rarp", IpField::Autoconf),
        ("10.0.0.5::::::dhcp4", IpField::Autoconf),
        ("10.0.0.256", IpField::Client),
        ("2001:db8::2::::::", IpField::Client), // IPv6 without brackets
        ("10.0.0.5:x", IpField::Server),
        ("10.0.0.5::10.0.0", IpField::Gateway),
        ("10.0.0.5::[2001:db8::1]", IpField::Gateway),
        ("10.0.0.5:::255.0.255.0", IpField::Netmask),
        ("10.0.0.5:::33", IpField::Netmask),
        ("10.0.0.5:::abc", IpField::Netmask),
        ("[2001:db8::2]:::255.255.255.0", IpField::Netmask),
        ("[2001:db8::2]:::129", IpField::Netmask),
        ("10.0.0.5::::bad_host", IpField::Hostname),
        ("10.0.0.5::::-lead", IpField::Hostname),
        ("10.0.0.5:::::averyveryverylongname0", IpField::Device),
        ("10.0.0.5::::::off:8.8.8", IpField::Dns0),
        ("10.0.0.5::::::off:8.8.8.8:x", IpField::Dns1),
        ("10.0.0.5::::::off:::ntp", IpField::Ntp0),
        ("eth0:dhcp:12", IpField::Mtu),
        ("eth0:dhcp:jumbo", IpField::Mtu),
        ("averyveryverylongname0:dhcp", IpField::Device),
    ];
    for (value, want) in cases {
        match parse_ip(value) {
            Err(IpcfgError::IpField {
                field, value: v, ..
            }) => {
                assert_eq!(field, *want, "{value}");
                assert_eq!(v, *value);
            }
            other => panic!("{value}: want {want} error, got {other:?}"),
        }
    }
    assert!(matches!(
        parse_ip("1.2.3.4:::::::::::"),
        Err(IpcfgError::IpTooManyFields { count: 12, .. })
    ));
    assert!(matches!(
        parse_ip("[2001:db8::2:::"),
        Err(IpcfgError::IpBrackets { .. })
    ));
    assert!(matches!(
        parse_ip("]10:"),
        Err(IpcfgError::IpBrackets { .. })
    ));
    // The message names the parameter, the field and the text.
    let e = parse_ip("10.0.0.5:::255.0.255.0").unwrap_err().to_string();
    assert_eq!(
        e,
        "ip=10.0.0.5:::255.0.255.0: <netmask> \"255.0.255.0\" is not a contiguous netmask"
    );
}

#[test]
fn vlan_forms() {
    let cases = [
        ("eth0.100:eth0", "eth0.100", "eth0", 100),
        ("eth0.0005:eth0", "eth0.0005", "eth0", 5),
        ("vlan5:enp0s3", "vlan5", "enp0s3", 5),
        ("vlan0042:bond0", "vlan0042", "bond0", 42),
        ("bond0.4094:bond0", "bond0.4094", "bond0", 4094),
    ];
    for (value, name, parent, id) in cases {
        let v = parse_vlan(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(
            (v.name.as_str(), v.parent.as_str(), v.id),
            (name, parent, id)
        );
    }
    for bad in [
        "eth0.100",
        "eth0.0:eth0",
        "eth0.4095:eth0",
        "eth0.x:eth0",
        "eth0.+5:eth0",
        "mgmt:eth0",
        "eth0.100:",
        ":eth0",
        "eth0.100:eth0/1",
        "averyverylongname.100:eth0",
    ] {
        assert!(parse_vlan(bad).is_err(), "{bad}");
    }
}

#[test]
fn from_cmdline_collects_everything() {
    let c = Cmdline::parse(
        "console=ttyS0 ip=eth0:dhcp ip=10.0.0.5::10.0.0.1:24:cp1:eth1:off \
         ip=eth0:dhcp6 vlan=eth1.100:eth1 keel.network.interface.ignore=eth2 \
         keel.network.interface.ignore=eth3 keel.network.interface.ignore=eth2 ip",
    );
    let p = from_cmdline(&c).unwrap();
    assert_eq!(p.ip.len(), 3);
    assert_eq!(p.vlans.len(), 1);
    assert_eq!(p.vlans[0].id, 100);
    assert_eq!(p.ignore, vec!["eth2", "eth3"]);
    assert!(p.is_ignored("eth3") && !p.is_ignored("eth0"));
    assert_eq!(p.hostname(), Some("cp1"));
    assert_eq!(p.ip_for("eth0").count(), 2);
    assert_eq!(p.ip_for("eth1").count(), 1);
    assert_eq!(p.ip_for("eth9").count(), 0);

    // keel.hostname wins over ip='s hostname.
    let c = Cmdline::parse("ip=::::fromip:: keel.hostname=fromkeel ip=eth5:dhcp");
    let p = from_cmdline(&c).unwrap();
    assert_eq!(p.hostname(), Some("fromkeel"));
    // An ip= without device applies to every link.
    assert_eq!(p.ip_for("anything").count(), 1);
    assert_eq!(p.ip_for("eth5").count(), 2);
    assert_eq!(
        from_cmdline(&Cmdline::parse("")).unwrap(),
        NetParams::default()
    );
}

#[test]
fn from_cmdline_reports_every_error_and_keeps_good_ones() {
    let c = Cmdline::parse(
        "ip=eth0:dhcp ip=eth0:any ip=10.0.0.300 vlan=bad keel.network.interface.ignore=a/b \
         keel.hostname=-x ip=eth1:dhcp vlan=eth1.7:eth1 vlan=eth1.7:eth1",
    );
    let errors = from_cmdline(&c).unwrap_err();
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert!(
        matches!(&errors[0], IpcfgError::IpDuplicate { device, earlier, .. }
        if device == "eth0" && earlier == "eth0:dhcp")
    );
    assert!(matches!(
        &errors[1],
        IpcfgError::IpField {
            field: IpField::Client,
            ..
        }
    ));
    assert!(matches!(&errors[2], IpcfgError::Vlan { .. }));
    assert!(matches!(&errors[3], IpcfgError::Vlan { reason, .. } if reason.contains("twice")));
    assert!(matches!(&errors[4], IpcfgError::Ignore { value, .. } if value == "a/b"));
    assert!(matches!(&errors[5], IpcfgError::Hostname { .. }));
    let (p, _) = parse_lenient(&c);
    assert_eq!(p.ip.len(), 2);
    assert_eq!(p.vlans.len(), 1);
    assert_eq!(p.hostname, None);

    // Two device-less DHCP entries clash; v4 static + v6 static on one
    // device do not.
    let c = Cmdline::parse("ip=dhcp ip=on");
    assert_eq!(from_cmdline(&c).unwrap_err().len(), 1);
    let c = Cmdline::parse("ip=10.0.0.5:::24::eth0 ip=[fd00::5]:::64::eth0");
    assert_eq!(from_cmdline(&c).unwrap().ip.len(), 2);
}

#[test]
fn ifname_rules() {
    for ok in ["eth0", "enp0s3", "a", "bond0.100", "x23456789012345"] {
        assert_eq!(check_ifname(ok), Ok(()), "{ok}");
    }
    for bad in ["", ".", "..", "a/b", "a:b", "a b", "x234567890123456"] {
        assert!(check_ifname(bad).is_err(), "{bad:?}");
    }
}
