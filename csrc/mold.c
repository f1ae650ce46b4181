/* MoldUDP64: split a burst of datagrams into message blocks in one call. */
