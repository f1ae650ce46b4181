"""Operations: doctor, tuning, the metrics endpoint, the pcap tap."""
