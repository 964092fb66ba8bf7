"""What the station registry shows from cases: figures per station, the map, charts, the
statistics page and its export. Every figure counts only cases the viewer may see, and the
figures that leave the system withhold small counts."""
