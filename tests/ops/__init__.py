"""Operations: doctor, tuning, metrics, pcap."""
