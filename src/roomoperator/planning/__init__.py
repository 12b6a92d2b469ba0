"""Planning: the pure part of a reconcile. A RoomSpec and the observed room become a typed `Plan`."""
