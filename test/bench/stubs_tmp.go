package main

func benchFirewallScale(repo, build string, rounds int) error { return nil }
func benchDataPath(repo, build string, rounds int) error       { return nil }
func benchReaction(repo, build string, rounds int) error       { return nil }
