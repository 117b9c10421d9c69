"""Lab hosts on one machine: namespaces instead of containers (see LAB.md, role pyike.ipsec.lab)."""
